"""Ready-to-run sagas, shaped like real work, that a worker node started in the project
folder can load; their code lives in :mod:`jobsaga.demo`, which ``jobsaga demo`` runs."""
