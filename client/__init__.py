"""Ostraca's client SDK and CLI."""

from .api import RegistryClient as RegistryClient
from .config import ClientConfig as ClientConfig
from .config import load_config as load_config
from .publish import PublishResult as PublishResult
from .publish import publish as publish
from .stream import open_dataset as open_dataset
