"""A node's background duties, one small module each, under one protocol (``base``).

Every node runs ``heartbeat`` (it is alive), ``leader`` (it may hold the cluster lease) and
``stager`` (due jobs become available). The leader alone runs the cluster-wide duties:
``lifeline`` (rescue jobs of dead nodes), ``cron`` and ``pruner``.
"""

from .base import Looper, Plugin
from .crontab import CronEntry
from .supervisor import NodePlugins, PluginOptions

__all__ = ["CronEntry", "Looper", "NodePlugins", "Plugin", "PluginOptions"]
