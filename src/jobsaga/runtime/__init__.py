"""The node that runs jobs: its queues' producers, the executor of one attempt, the batched
acknowledgements and a node's side of queue control (docs/operations.md).

Application code builds a node with ``app.node(queues, **options)``; :class:`Node` and
:class:`NodeThread` (and :class:`NodeOptions`, its keywords) are named here for type hints and for embedding a node in a program.
"""

from .node import Node, NodeOptions, NodeThread

__all__ = ["Node", "NodeOptions", "NodeThread"]
