"""Node configuration from Python, a TOML file, the environment and overrides; one set of
names for a node's options: Node's keywords, in every source."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest

from jobsaga import App, Worker
from jobsaga.cli.main import cli
from jobsaga.config import ENV_NAMES, FORMER_KEYS, NOT_NODE_OPTIONS, NodeConfig
from jobsaga.errors import ConfigError
from jobsaga.plugins.crontab import derived_name
from jobsaga.plugins.supervisor import PluginOptions
from jobsaga.runtime import Node, NodeOptions

from . import workers as w

FILE = """
url = "sqlite:///from-file.db"
name = "file-node"
grace_period = 30
prune_after = 86400
prune_limit = 100
crontab = [
    { expression = "*/5 * * * *", worker = "tests.operations.workers.Noop", args = { a = 1 } },
    ["@daily", "tests.operations.workers.Noop", { name = "nightly", queue = "mailers" }],
]

[queues]
default = 10
mailers = 5
"""


@pytest.fixture
def toml_file(tmp_path: Path) -> Path:
    path = tmp_path / "jobsaga.toml"
    path.write_text(FILE, encoding="utf-8")
    return path


def test_file_then_environment_then_overrides(toml_file: Path) -> None:
    only_file = NodeConfig.load(toml_file, env={})
    assert only_file.grace_period == 30 and only_file.queues == {"default": 10, "mailers": 5}
    env = {"JOBSAGA_GRACE_PERIOD": "40", "JOBSAGA_QUEUES": "default=3", "JOBSAGA_PRUNE_LIMIT": "7"}
    with_env = NodeConfig.load(toml_file, env=env)
    assert with_env.grace_period == 40
    assert with_env.queues == {"default": 3}  # replaced whole, not merged
    assert with_env.prune_limit == 7 and with_env.prune_after == 86400
    flags = NodeConfig.load(toml_file, env=env, overrides={"grace_period": 50, "prune_after": 60})
    assert flags.grace_period == 50 and flags.prune_after == 60
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
        ("prune_aftr = 1", r"unknown key prune_aftr .*did you mean 'prune_after'"),
        ("rescue_afer = 1", r"unknown key rescue_afer .*'rescue_after'"),
        ("[queues]\ndefault = 0", r"queues.default .*greater than or equal to 1"),
        ("[queues]\n'bad queue' = 1", r"invalid queue name 'bad queue'"),
        ("grace_period = -1", r"grace_period .*greater than or equal to 0"),
        ("poll_interval = 'soon'", r"poll_interval .*valid number"),
        (
            "crontab = [{ expression = '* * *', worker = 'x', name = 'n1' }]",
            r"crontab .*: cron entry 'n1': 3 fields",
        ),
        (
            "crontab = [{ expresion = '* * * * *', worker = 'x' }]",
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
    with pytest.raises(ConfigError, match="unknown key rescue_aftr: did you mean 'rescue_after'"):
        NodeConfig(rescue_aftr=3)  # type: ignore[call-arg]


def test_a_node_built_from_configuration(make_app: Callable[..., App], toml_file: Path) -> None:
    app = make_app(w.Noop)
    config = NodeConfig.load(toml_file, env={}, overrides={"rescue_after": 30})
    node = config.node(app)
    assert node.name == "file-node" and node.grace_period == 30
    assert node.queue_limits == {"default": 10, "mailers": 5}
    options = config.node_options()
    assert options["prune_after"] == 86400 and options["prune_limit"] == 100
    assert options["rescue_after"] == 30
    assert [e.name for e in options["crontab"]] == [
        derived_name("*/5 * * * *", "tests.operations.workers.Noop", {"args": {"a": 1}}),
        "nightly",
    ]
    # Unset options are left to Node's own defaults.
    bare = NodeConfig().node(app)
    assert bare.queue_limits == {"default": 10} and bare.grace_period == 15.0


def test_a_node_option_has_one_name_everywhere() -> None:
    """NodeConfig's keys (TOML, JOBSAGA_<KEY>, --set, the worker's flags) are Node's keyword
    options under Node's names, in Node's order; the plugins' options are a subset of them."""
    keywords = [
        name
        for name, p in inspect.signature(Node.__init__).parameters.items()
        if p.kind is p.KEYWORD_ONLY
    ]
    node_keys = [key for key in NodeConfig.model_fields if key not in NOT_NODE_OPTIONS]
    assert node_keys == keywords
    assert list(NodeOptions.__annotations__) == keywords  # app.node(**options), typed
    assert list(inspect.signature(Node.__init__).parameters)[:3] == ["self", "app", "queues"]
    plugin_options = [f.name for f in dataclasses.fields(PluginOptions)]
    assert set(plugin_options) <= set(keywords), set(plugin_options) - set(keywords)
    assert {ENV_NAMES[f"JOBSAGA_{key.upper()}"] for key in node_keys} == set(node_keys)
    worker = cli.commands["worker"]
    flags = {opt for p in worker.params if isinstance(p, click.Option) for opt in p.opts}
    for key in node_keys:
        if key != "crontab":  # a list: the file, the environment or --set crontab='[...]'
            assert "--" + key.replace("_", "-") in flags, key


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            {"env": {"JOBSAGA_PRUNER_MAX_AGE": "60"}},
            "JOBSAGA_PRUNER_MAX_AGE is now JOBSAGA_PRUNE_AFTER",
        ),
        ({"env": {"JOBSAGA_NODE_NAME": "w1"}}, "JOBSAGA_NODE_NAME is now JOBSAGA_NAME"),
        ({"env": {"JOBSAGA_LEADER_ENABLED": "false"}}, "is now JOBSAGA_LEADERSHIP"),
        (
            {"overrides": {"plugins.leader.enabled": False}},
            r"unknown key plugins \(from overrides\): plugins.leader.enabled is now leadership",
        ),
        # removed, not renamed: not "did you mean 'stage_interval'?", a different option
        ({"overrides": {"status_interval": 3}}, r"status_interval was removed: the heartbeat"),
        ({"env": {"JOBSAGA_STATUS_INTERVAL": "3"}}, r"status_interval was removed: the heartbeat"),
    ],
)
def test_a_former_key_is_an_error_naming_its_new_name(source: dict[str, Any], message: str) -> None:
    """A deployment still setting a former name must not silently run without it."""
    with pytest.raises(ConfigError, match=message):
        NodeConfig.load(discover=False, **{"env": {}, **source})


def test_a_former_table_in_a_file_names_each_key_now(tmp_path: Path) -> None:
    path = tmp_path / "jobsaga.toml"
    path.write_text("[plugins.pruner]\nmax_age = 60\nlimit = 10\n", encoding="utf-8")
    with pytest.raises(
        ConfigError,
        match=r"unknown key plugins \(from .*jobsaga.toml\): plugins.pruner.max_age is now "
        r"prune_after; plugins.pruner.limit is now prune_limit",
    ):
        NodeConfig.load(path, env={})
    assert set(FORMER_KEYS.values()) <= set(NodeConfig.model_fields)


def test_an_override_error_names_where_the_override_came_from() -> None:
    """The CLI says which flag or ``--set`` gave each override; an error names it as typed
    (and says "overrides" only for keywords given in Python)."""
    sources = {
        "grace_period": "--grace-period",
        "queues.mailers": "--set queues.mailers=0",
        "prune_after": "--set prune_after=-1",
    }
    with pytest.raises(ConfigError) as flag:
        NodeConfig.load(overrides={"grace_period": -1}, sources=sources, env={}, discover=False)
    assert str(flag.value) == (
        "invalid jobsaga configuration: --grace-period: Input should be greater than or equal "
        "to 0 (got -1)"
    )
    with pytest.raises(ConfigError) as nested:
        NodeConfig.load(
            overrides={"queues.mailers": 0, "prune_after": -1},
            sources=sources,
            env={},
            discover=False,
        )
    assert str(nested.value) == (
        "invalid jobsaga configuration: --set queues.mailers=0: Input should be greater than "
        "or equal to 1; --set prune_after=-1: Input should be greater than 0"
    )
    with pytest.raises(ConfigError, match=r"grace_period \(from overrides\): "):
        NodeConfig.load(overrides={"grace_period": -1}, env={}, discover=False)


def test_a_queue_listed_twice_in_the_environment_is_refused() -> None:
    with pytest.raises(ConfigError, match="queue 'mailers' is given twice"):
        NodeConfig.load(env={"JOBSAGA_QUEUES": "mailers=5,default=1,mailers=3"}, discover=False)


def test_a_class_option_and_a_toml_key_get_the_same_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "jobsaga.toml"
    path.write_text("prune_aftr = 5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="did you mean 'prune_after'\\?"):
        NodeConfig.load(path, env={})
    with pytest.raises(ConfigError, match="did you mean 'max_attempts'\\?"):
        type("Typo", (Worker,), {}, max_atempts=3)
