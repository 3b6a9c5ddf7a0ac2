"""The README's library example runs as written."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO


def test_the_readme_library_example_runs() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Using the tunnel as a library", 1)[1]
    [code] = re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0], flags=re.S)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    events, deadline = result.stdout.splitlines()
    assert events == "['Paired', 'StateChanged', 'LinkUp', 'MessageReceived']"
    assert float(deadline) > 0.1
