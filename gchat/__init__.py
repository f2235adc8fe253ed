"""gchat: a multi-client TCP chat server on gevent."""

__version__ = "0.1.0"
