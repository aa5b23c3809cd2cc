"""Node configuration from Python, a TOML file, the environment and overrides."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from jobsaga import App
from jobsaga.config import NodeConfig
from jobsaga.errors import ConfigError

from . import workers as w

FILE = """
url = "sqlite:///from-file.db"
name = "file-node"
grace_period = 30

[queues]
default = 10
mailers = 5

[plugins.pruner]
max_age = 86400
limit = 100

[plugins.cron]
crontab = [
    { expression = "*/5 * * * *", worker = "tests.operations.workers.Noop", args = { a = 1 } },
    ["@daily", "tests.operations.workers.Noop", { name = "nightly", queue = "mailers" }],
]
"""


@pytest.fixture
def toml_file(tmp_path: Path) -> Path:
    path = tmp_path / "jobsaga.toml"
    path.write_text(FILE, encoding="utf-8")
    return path


def test_file_then_environment_then_overrides(toml_file: Path) -> None:
    only_file = NodeConfig.load(toml_file, env={})
    assert only_file.grace_period == 30 and only_file.queues == {"default": 10, "mailers": 5}
    env = {"JOBSAGA_GRACE_PERIOD": "40", "JOBSAGA_QUEUES": "default=3", "JOBSAGA_PRUNER_LIMIT": "7"}
    with_env = NodeConfig.load(toml_file, env=env)
    assert with_env.grace_period == 40
    assert with_env.queues == {"default": 3}  # replaced whole, not merged
    assert with_env.plugins.pruner.limit == 7 and with_env.plugins.pruner.max_age == 86400
    flags = NodeConfig.load(
        toml_file, env=env, overrides={"grace_period": 50, "plugins.pruner.max_age": 60}
    )
    assert flags.grace_period == 50 and flags.plugins.pruner.max_age == 60
    assert flags.url == "sqlite:///from-file.db" and flags.name == "file-node"


def test_the_config_file_comes_from_the_environment_or_the_folder(
    toml_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert NodeConfig.load(env={"JOBSAGA_CONFIG": str(toml_file)}).name == "file-node"
    monkeypatch.chdir(tmp_path)
    assert NodeConfig.load(env={}).name == "file-node"
    assert NodeConfig.load(env={}, discover=False).name is None
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.jobsaga]\nname = "from-pyproject"\n', encoding="utf-8")
    assert NodeConfig.load(pyproject, env={}).name == "from-pyproject"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "queus = { default = 1 }",
            r"unknown key queus \(from .*jobsaga.toml\): did you mean 'queues'",
        ),
        ("[plugins.prunner]\nmax_age = 1", r"unknown key plugins.prunner .*did you mean 'pruner'"),
        ("[plugins.pruner]\nmax_agee = 1", r"unknown key plugins.pruner.max_agee .*'max_age'"),
        ("[queues]\ndefault = 0", r"queues.default .*greater than or equal to 1"),
        ("[queues]\n'bad queue' = 1", r"invalid queue name 'bad queue'"),
        ("grace_period = -1", r"grace_period .*greater than or equal to 0"),
        ("poll_interval = 'soon'", r"poll_interval .*valid number"),
        (
            "[plugins.cron]\ncrontab = [{ expression = '* * *', worker = 'x', name = 'n1' }]",
            r"plugins.cron.crontab .*: cron entry 'n1': 3 fields",
        ),
        (
            "[plugins.cron]\ncrontab = [{ expresion = '* * * * *', worker = 'x' }]",
            r"entry #0: unknown key 'expresion'",
        ),
        ("grace_period = ", r"not valid TOML"),
    ],
)
def test_mistakes_in_a_file_name_the_key_and_the_file(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "jobsaga.toml"
    path.write_text(text + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        NodeConfig.load(path, env={})


def test_mistakes_in_the_environment_and_in_python() -> None:
    with pytest.raises(
        ConfigError, match="JOBSAGA_GRACE_PERIDO .*did you mean JOBSAGA_GRACE_PERIOD"
    ):
        NodeConfig.load(env={"JOBSAGA_GRACE_PERIDO": "3"}, discover=False)
    with pytest.raises(ConfigError, match=r"grace_period \(from JOBSAGA_GRACE_PERIOD\)"):
        NodeConfig.load(env={"JOBSAGA_GRACE_PERIOD": "long"}, discover=False)
    with pytest.raises(ConfigError, match=r"queues \(from JOBSAGA_QUEUES\): 'default': use NAME"):
        NodeConfig.load(env={"JOBSAGA_QUEUES": "default"}, discover=False)
    # Other JOBSAGA_ variables (a test suite's, another tool's) are not configuration.
    unrelated = NodeConfig.load(env={"JOBSAGA_TEST_PG_URL": "x"}, discover=False)
    assert unrelated == NodeConfig()
    with pytest.raises(ConfigError, match="unknown key queus: did you mean 'queues'"):
        NodeConfig(queus={"default": 1})  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="unknown key plugins.lifeline.rescue: did you mean"):
        NodeConfig(plugins={"lifeline": {"rescue": 3}})  # type: ignore[arg-type]


def test_a_node_built_from_configuration(make_app: Callable[..., App], toml_file: Path) -> None:
    app = make_app(w.Noop)
    config = NodeConfig.load(toml_file, env={}, overrides={"plugins.lifeline.rescue_after": 30})
    node = config.node(app)
    assert node.name == "file-node" and node.grace_period == 30
    assert node.queue_limits == {"default": 10, "mailers": 5}
    options = config.node_options()
    assert options["prune_after"] == 86400 and options["prune_limit"] == 100
    assert options["rescue_after"] == 30
    assert [e.name for e in options["crontab"]] == [
        "*/5 * * * * tests.operations.workers.Noop",
        "nightly",
    ]
    # Unset options are left to Node's own defaults.
    bare = NodeConfig().node(app)
    assert bare.queue_limits == {"default": 10} and bare.grace_period == 15.0
