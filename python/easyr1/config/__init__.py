"""The typed configuration tree (EasyR1's section layout) and its loader.

``load_config("examples/sandbox.yaml", ["worker.rollout.n=8"])`` returns a validated :class:`EasyR1Config`.
Every field has a docstring; ``easyr1 validate-config --explain KEY`` prints it.
"""

from .actor import ActorConfig, FSDPConfig, ModelConfig, OffloadConfig, OptimConfig, RefConfig
from .algorithm import AlgorithmConfig
from .base import ConfigError, ConfigValidationError
from .cluster import ClusterConfig, PoolPlacement
from .data import DataConfig
from .editing import ImageEditConfig
from .judge import JudgeConfig
from .loader import config_to_dict, dump_yaml, load_config, summary_lines
from .reward import DIMENSIONS, RewardConfig
from .rollout import RolloutConfig, RolloutValOverride
from .root import EasyR1Config, WorkerConfig
from .sandbox import SandboxConfig
from .sft import SFTConfig
from .telemetry import PrometheusConfig, TelemetryConfig
from .trainer import TrainerConfig

__all__ = [
    "DIMENSIONS",
    "ActorConfig",
    "AlgorithmConfig",
    "ClusterConfig",
    "ConfigError",
    "ConfigValidationError",
    "DataConfig",
    "EasyR1Config",
    "FSDPConfig",
    "ImageEditConfig",
    "JudgeConfig",
    "ModelConfig",
    "OffloadConfig",
    "OptimConfig",
    "PoolPlacement",
    "PrometheusConfig",
    "RefConfig",
    "RewardConfig",
    "RolloutConfig",
    "RolloutValOverride",
    "SFTConfig",
    "SandboxConfig",
    "TelemetryConfig",
    "TrainerConfig",
    "WorkerConfig",
    "config_to_dict",
    "dump_yaml",
    "load_config",
    "summary_lines",
]
