"""No credentials or keys in the repository: detect-secrets over every file git would commit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DETECT_SECRETS = Path(sys.executable).parent / "detect-secrets"


def scan(paths: list[str], cwd: Path) -> dict[str, list[str]]:
    """detect-secrets' findings: file -> secret types found in it."""
    done = subprocess.run(
        [str(DETECT_SECRETS), "scan", *paths], capture_output=True, text=True, check=True, cwd=cwd, timeout=300
    )
    results = json.loads(done.stdout)["results"]
    return {path: sorted({secret["type"] for secret in secrets}) for path, secrets in results.items()}


def test_no_file_git_would_commit_holds_a_secret():
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    files = [path for path in listed.stdout.splitlines() if (ROOT / path).is_file()]
    assert len(files) > 50
    assert scan(files, ROOT) == {}


def test_the_scan_finds_planted_secrets(tmp_path):
    header = "-----BEGIN " + "RSA PRIVATE KEY-----"  # split so that this file itself holds no key
    (tmp_path / "key.pem").write_text(f"{header}\nMIIEowIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM2\n")
    (tmp_path / "settings.py").write_text('aws_access_key_id = "AKIA' + 'IOSFODNN7EXAMPLE"\n')
    found = scan(["key.pem", "settings.py"], tmp_path)
    assert found == {"key.pem": ["Private Key"], "settings.py": ["AWS Access Key"]}
