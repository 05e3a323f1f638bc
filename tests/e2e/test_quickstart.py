"""Every command of the quickstart (docs/quickstart.md, linked from the README) works as written.

The fenced blocks are read from the document itself, so the test breaks when the text changes
and stops working. Commands 1 and 3 are long-running (the text says: own terminal, or append
`&`): the test starts them in the background and waits for them to be ready, as a reader would.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "quickstart.md"
README = ROOT / "README.md"


def _blocks_after(text: str, heading: str) -> list[list[str]]:
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    return [[ln.split("  #")[0].rstrip() for ln in b.splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")] for b in blocks]


def test_readme_two_commands_exist() -> None:
    text = README.read_text()
    assert "make demo" in text and "make test" in text and "docs/quickstart.md" in text
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def test_quickstart_commands_work_as_written(tmp_path: Path, make_video) -> None:
    five, then = _blocks_after(DOC.read_text(), "## A laptop and one worker on 127.0.0.1")[:2]
    assert len(five) == 5, five
    shutil.copy(make_video(colors=("red", "blue"), seconds_each=1.0), tmp_path / "lecture.mp4")
    bindir = Path(sys.executable).parent
    script = [
        "set -e",
        "wait_for() { for i in $(seq 300); do eval \"$1\" >/dev/null 2>&1 && return 0; "
        "sleep 0.1; done; echo \"timed out: $1\" >&2; return 1; }",
        five[0] + " > signaling.log 2>&1 &",
        "wait_for 'python -c \"import socket; "
        "socket.create_connection((\\\"127.0.0.1\\\", 8765), 1)\"'",
        five[1],
        five[2] + " > worker.log 2>&1 &",
        "wait_for 'rtc-annotator room workers --token $ADMIN --json | grep -q name'",
        five[3],
        "echo '--- jump'",
        five[4],
        "echo '--- then'",
        *[f"{cmd} || [ $? -eq 1 ]" if "doctor" in cmd else cmd for cmd in then],
        "kill %1 %2; wait",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTC_ANNOTATOR_")}
    env.update(HOME=str(tmp_path), XDG_DATA_HOME=str(tmp_path / "data"),
               XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_CACHE_HOME=str(tmp_path / "cache"),
               PATH=f"{bindir}{os.pathsep}{env.get('PATH', '')}")
    try:
        r = subprocess.run(["bash", "-c", "\n".join(script)], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=240)
    finally:
        subprocess.run(["pkill", "-f", "--state /tmp/rtca-state.sqlite3"], check=False)
        Path("/tmp/rtca-state.sqlite3").unlink(missing_ok=True)
    logs = "".join(f"\n--- {p.name}\n{p.read_text()[-3000:]}" for p in tmp_path.glob("*.log"))
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:] + logs
    out = r.stdout
    jump_out = out.split("--- jump", 1)[1].split("--- then", 1)[0]
    assert "1000" in jump_out, jump_out          # the first cut of the 2-scene video
    assert "rtc" in out.split("--- jump", 1)[0]   # submit's summary: sent over the data channel
    assert '"artifact_type"' in out               # export --format jsonl -o -


@pytest.fixture(autouse=True)
def _port_8765_free() -> None:
    import socket

    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 8765)) == 0:
            pytest.fail("port 8765 (the quickstart's default) is already in use")
