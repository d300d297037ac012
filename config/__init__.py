"""Typed configuration for shoal: `load_config()` builds a validated, frozen `Config`
from defaults, a TOML file, SHOAL_* environment variables and explicit overrides."""

from shoal.config.loader import ConfigError, load_config
from shoal.config.model import (
    AuthConfig,
    ClusterConfig,
    Config,
    CorsConfig,
    Credential,
    DrivesConfig,
    ErasureConfig,
    HealingConfig,
    LimitsConfig,
    LoggingConfig,
    MultipartConfig,
    ServerConfig,
    StorageConfig,
    TlsConfig,
)

__all__ = [
    "AuthConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "CorsConfig",
    "Credential",
    "DrivesConfig",
    "ErasureConfig",
    "HealingConfig",
    "LimitsConfig",
    "LoggingConfig",
    "MultipartConfig",
    "ServerConfig",
    "StorageConfig",
    "TlsConfig",
    "load_config",
]
