"""gRPC on a unix domain socket: TF Serving's ``--grpc_socket_path`` (spec §2.1).

The same gRPC services listen on ``unix:<path>`` as well as on ``--port``. Before gRPC binds, the
path is claimed: a socket file left by a crashed run (nobody accepts on it) is removed. A live one
(another server accepts on it) is taken over with a warning that names the path, as TF Serving's
gRPC does (it unlinks the path and binds again): the other server keeps its open connections and
gets no new ones. TF Serving's own end-to-end suite relies on that: every server it starts passes
the same ``--grpc_socket_path`` while the earlier ones keep running. Anything else in the way (a
regular file, a missing folder, a path longer than the kernel allows) is an error naming the path.
After shutdown the socket file is removed, unless another server has taken the path over since.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat

# sockaddr_un.sun_path is 108 bytes on Linux (104 on macOS), including the terminating NUL.
MAX_PATH_BYTES = 107

log = logging.getLogger("nbserve.grpc")


class SocketPathError(OSError):
    """``--grpc_socket_path`` cannot be used; the message names the path and why."""


def grpc_address(path: str) -> str:
    """The gRPC address of a socket path: ``unix:/abs/path``."""
    return "unix:" + path


def claim_socket_path(path: str) -> str:
    """Make ``path`` ready for gRPC to bind and return it absolute.

    Removes a socket file already there: a stale one (connect refused: its server is gone)
    quietly, a live one with a warning (this server takes the path over, as TF Serving does).
    Raises SocketPathError when the path is something other than a socket, when its folder does
    not exist, or when it is too long for a unix socket address.
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
        log.warning("--grpc_socket_path %s: another server is listening there; this server takes "
                    "the path over (as TF Serving does), the other gets no new connections on it",
                    full)
    else:
        log.info("--grpc_socket_path %s: removing the socket file a stopped server left", full)
    os.unlink(full)
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


def socket_identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the socket file at ``path``, or None when there is none (the ctime
    would not do: linking the file, as ``SocketFile`` does, changes it)."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISSOCK(info.st_mode) else None


class SocketFile:
    """The socket file one server binds at ``path`` (absolute, from ``claim_socket_path``).

    gRPC removes its unix socket path when it stops, even when another server has taken the path
    over since; ``before_stop`` keeps a hard link to that server's file and ``after_stop`` puts it
    back, so stopping this server leaves the other one reachable. ``after_stop`` removes this
    server's own file. Neither raises.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._identity: tuple[int, int] | None = None
        self._kept = ""

    def bound(self) -> None:
        """Record the file gRPC just bound (call once the server listens)."""
        self._identity = socket_identity(self.path)

    def before_stop(self) -> None:
        current = socket_identity(self.path)
        if current is None or current == self._identity:
            return
        kept = f"{self.path}.{os.getpid()}.keep"
        try:
            os.link(self.path, kept)
            self._kept = kept
        except OSError:
            log.debug("could not keep %s for the server that took it over", self.path)

    def after_stop(self) -> None:
        try:
            if self._kept:
                os.replace(self._kept, self.path)
            elif self._identity is not None and socket_identity(self.path) == self._identity:
                os.unlink(self.path)
        except OSError:
            log.debug("could not tidy %s", self.path, exc_info=True)
        self._kept = ""
