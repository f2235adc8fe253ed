"""Server settings, one immutable object shared by the CLI, server and sessions."""

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 5000
    metrics_port: int = 0
    metrics_timeout: float = 5.0
    history: int = 20
    max_line: int = 4096
    rate: float = 20.0
    burst: int = 40
    max_backlog: int = 1048576
    max_clients: int = 10000
    max_per_ip: int = 0
    # Connections a second one address may open after a burst; 0: no limit.
    connect_rate: float = 0.0
    connect_burst: int = 20
    # How many leading bits of a client's address the per-address limits key on.
    ipv4_prefix: int = 32
    ipv6_prefix: int = 64
    idle_timeout: float = 0.0
    shutdown_timeout: float = 5.0
    certfile: Optional[str] = None
    keyfile: Optional[str] = None
    handshake_timeout: float = 10.0
    password_file: Optional[str] = None
    oper_file: Optional[str] = None
    log_level: str = "info"
    bus: str = ""
    node_timeout: float = 5.0
    reuse_port: bool = False
    announce_limit: int = 0
    join_rate: float = 1.0
    join_burst: int = 20
    msg_rate: float = 5.0
    msg_burst: int = 40
    announce_rate: float = 2000.0
    announce_burst: int = 200000
    log_format: str = "text"
    web_port: int = 0
    web_origin: str = ""
    web_ping: float = 30.0
    # IRC listeners (gchat.irc): None is off; 0 picks a free port.
    irc_port: Optional[int] = None
    ircs_port: Optional[int] = None
    store: Optional[str] = None
    keep_days: float = 0.0
    keep_lines: int = 0
