"""``miaopi serve``'s commit process: started before the workers, stopped after them.

``python -m api.commit_process --socket PATH --parent PID`` opens the decision store from
the same settings as the workers (the environment ``serve`` prepared) and serves
``explanations.committer.CommitServer`` until it is told to stop (SIGTERM) or the server
that started it is gone. ``CommitProcess`` starts and watches it from ``serve``: if it
dies, the workers write their own appends (as they would without one) and it is started
again.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import structlog

log = structlog.get_logger("miaopi.commit_process")

READY_TIMEOUT_S = 60.0


class CommitProcess:
    """The commit process of one ``serve``: its socket in a private folder, restarted if it
    dies while the server runs."""

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="miaopi-commit-")  # mode 0700
        self.path = str(Path(self.folder) / "commit.sock")
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self) -> bool:
        """Start it and wait until it answers; False (and a warning) if it does not."""
        if not self._spawn():
            return False
        self._watcher = threading.Thread(target=self._watch, name="commit-watch", daemon=True)
        self._watcher.start()
        return True

    def _spawn(self) -> bool:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "api.commit_process", "--socket", self.path,
             "--parent", str(os.getpid())],
        )  # fmt: skip
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                    probe.connect(self.path)
                return True
            except OSError:
                time.sleep(0.05)
        return False

    def _watch(self) -> None:
        while not self._stopping.is_set():
            process = self._process
            if process is None:
                return
            code = process.wait()
            if self._stopping.is_set():
                return
            print(
                f"提交进程已退出（{code}），重新启动 / the commit process exited ({code}); "
                "restarting it (meanwhile each worker writes its own decisions)",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(1.0)
            if not self._stopping.is_set():
                self._spawn()

    def stop(self) -> None:
        """After the workers: SIGTERM (it finishes the group it is writing), then SIGKILL."""
        self._stopping.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--parent", type=int, default=0)
    args = parser.parse_args(argv)

    from api.logging import configure_logging
    from api.settings import Settings
    from explanations.committer import CommitServer
    from explanations.store import DecisionStore

    settings = Settings.from_env()
    configure_logging(settings.log_level)
    secrets = settings.secrets()
    store = DecisionStore(
        settings.database_url,
        signing_key=secrets.signing_key,
        checkpoint_file=settings.checkpoints,
    )
    store.create_schema(migrate=settings.migrate)
    server = CommitServer(store, args.socket)
    # Ctrl-C reaches the whole process group: the workers stop first, then serve stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    parent = args.parent

    def alive() -> bool:
        return bool(parent == 0 or os.getppid() == parent)

    try:
        server.serve(alive=alive)
    finally:
        store.write_checkpoint()
        store.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
