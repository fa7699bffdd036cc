"""gRPC on a unix domain socket: TF Serving's ``--grpc_socket_path`` (spec §2.1).

The same gRPC services listen on ``unix:<path>`` as well as on ``--port``. Before gRPC binds, the
path is claimed: a socket file left by a crashed run (nobody accepts on it) is removed, a live one
(a connect succeeds) is an error that names the path, and anything else in the way (a regular
file, a missing folder, a path longer than the kernel allows) is an error too. After shutdown the
socket file is removed, unless another process has replaced it meanwhile.
"""

from __future__ import annotations

import errno
import os
import socket
import stat

# sockaddr_un.sun_path is 108 bytes on Linux (104 on macOS), including the terminating NUL.
MAX_PATH_BYTES = 107


class SocketPathError(OSError):
    """``--grpc_socket_path`` cannot be used; the message names the path and why."""


def grpc_address(path: str) -> str:
    """The gRPC address of a socket path: ``unix:/abs/path``."""
    return "unix:" + path


def claim_socket_path(path: str) -> str:
    """Make ``path`` ready for gRPC to bind and return it absolute.

    Removes a stale socket file (connect refused: its server is gone). Raises SocketPathError
    when a server is listening there, when the path is something other than a socket, when its
    folder does not exist, or when it is too long for a unix socket address.
    """
    full = os.path.abspath(os.path.expanduser(path))
    if len(os.fsencode(full)) > MAX_PATH_BYTES:
        raise SocketPathError(f"--grpc_socket_path {full} is too long for a unix socket "
                              f"(at most {MAX_PATH_BYTES} bytes)")
    folder = os.path.dirname(full)
    if not os.path.isdir(folder):
        raise SocketPathError(f"--grpc_socket_path {full}: folder {folder} does not exist")
    try:
        mode = os.lstat(full).st_mode
    except FileNotFoundError:
        return full
    if not stat.S_ISSOCK(mode):
        raise SocketPathError(f"--grpc_socket_path {full} exists and is not a socket")
    if _is_live(full):
        raise SocketPathError(f"--grpc_socket_path {full} is in use: another server is "
                              "listening on it; stop it or choose another path")
    os.unlink(full)  # left behind by a run that did not shut down cleanly
    return full


def _is_live(path: str) -> bool:
    """True when something accepts connections on the socket file ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(2.0)
        probe.connect(path)
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return False
        raise SocketPathError(f"--grpc_socket_path {path}: cannot check it: {exc.strerror}"
                              ) from None
    finally:
        probe.close()
    return True


def socket_identity(path: str) -> tuple[int, int, int] | None:
    """(device, inode, ctime) of the socket file at ``path``, or None when there is none."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_ctime_ns) if stat.S_ISSOCK(info.st_mode) else None


def release_socket_path(path: str, identity: tuple[int, int, int] | None) -> None:
    """Remove the socket file this server bound at ``path`` (``identity`` recorded after the
    bind); a file some other process put there since is left alone. Never raises."""
    if identity is None or socket_identity(path) != identity:
        return
    try:
        os.unlink(path)
    except OSError:
        pass
