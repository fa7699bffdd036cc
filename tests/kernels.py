"""A real Jupyter kernel for tests (jupyter_client): run code, read stdout and display data."""

from __future__ import annotations

import json
import os
import textwrap
from typing import Any

import jupyter_client


class Kernel:
    """A ``python3`` kernel started in ``cwd``; every ``run`` raises with the error on failure."""

    def __init__(self, cwd: str, env: dict[str, str | None] | None = None) -> None:
        """``env``: changes to the kernel's environment (None removes a variable)."""
        merged = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1",
                  **(env or {})}
        env = {key: value for key, value in merged.items() if value is not None}
        self.stderr = ""  # the last cell's stderr stream
        self.km = jupyter_client.KernelManager(kernel_name="python3")
        self.km.start_kernel(cwd=cwd, env=env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def run_with_displays(self, code: str, timeout: float = 90) -> tuple[str, list[dict]]:
        """(stdout, display_data/execute_result bundles) of one cell."""
        out: list[str] = []
        err: list[str] = []
        displays: list[dict] = []
        errors: list[str] = []

        def hook(msg: dict) -> None:
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream" and content["name"] == "stdout":
                out.append(content["text"])
            elif kind == "stream" and content["name"] == "stderr":
                err.append(content["text"])
            elif kind in ("display_data", "execute_result"):
                displays.append(content["data"])
            elif kind == "error":
                errors.append(f"{content['ename']}: {content['evalue']}")

        reply = self.kc.execute_interactive(textwrap.dedent(code), output_hook=hook,
                                            timeout=timeout)
        self.stderr = "".join(err)
        if reply["content"]["status"] != "ok" or errors:
            raise AssertionError(f"cell failed: {errors or reply['content']}\n{code}")
        return "".join(out), displays

    def run(self, code: str, timeout: float = 90) -> str:
        """The cell's stdout."""
        return self.run_with_displays(code, timeout)[0]

    def json(self, code: str) -> Any:
        """Run ``code`` whose last stdout line is JSON; return it."""
        return json.loads(self.run(code).strip().splitlines()[-1])

    def comm_msg(self, comm_id: str, data: dict) -> None:
        """What a front end sends to a widget model."""
        self.kc.shell_channel.send(self.kc.session.msg(
            "comm_msg", {"comm_id": comm_id, "data": data}))

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=False)
