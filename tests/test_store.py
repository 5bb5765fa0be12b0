"""Data store: manifest, download from a local HTTP server (resume, fallback), import, atomic install."""

from __future__ import annotations

import json
import shutil
import socket
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from genies.cli import GeniesGroup
from genies.commands import data_store
from genies.data.manifest import FileEntry, Manifest, build_manifest, load_manifest, verify
from genies.data.store import (
    ManifestMismatchError,
    StoreError,
    _download_name,
    download,
    find_distributions_root,
    import_data,
)

DISTS = ("alpha", "beta", "gamma")


def _write_dists(folder: Path) -> Path:
    for d, name in enumerate(DISTS):
        (folder / name).mkdir(parents=True)
        for split, n in (("train", 4), ("test", 2)):
            records = [{"prompt": f"{name} {split} {i}?", "responses": {str(i + d): 1, str(i - 1): 0}}
                       for i in range(n)]
            (folder / name / f"{split}.json").write_text(json.dumps(records, indent=1))
        (folder / name / "metadata.json").write_text(json.dumps({"id": name}))
    return folder


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Manifest]:
    folder = _write_dists(tmp_path / "source" / "distributions")
    return folder, build_manifest(folder)


def _tar(folder: Path, out: Path, prefix: str = "GENIES-0123/distributions") -> Path:
    with tarfile.open(out, "w:gz" if out.name.endswith(".gz") else "w") as tar:
        tar.add(folder, arcname=prefix)
        readme = folder.parent / "README.md"
        readme.write_text("not data")
        tar.add(readme, arcname=prefix.split("/")[0] + "/README.md")
    return out


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GENIES_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


class _Server:
    """A local HTTP server for one payload; it can ignore Range and cut a response short once."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.honor_range = True
        self.cut_after: int | None = None
        self.ranges: list[str | None] = []
        self.sent = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path != "/genies.tar":
                    self.send_error(404)
                    return
                server.ranges.append(self.headers.get("Range"))
                start = 0
                if server.honor_range and self.headers.get("Range"):
                    start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
                    if start >= len(server.payload):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(server.payload)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                body = server.payload[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(server.payload) - 1}/{len(server.payload)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    body, server.cut_after = body[:server.cut_after], None
                    self.close_connection = True
                self.wfile.write(body)
                server.sent += len(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/genies.tar"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server(data: tuple[Path, Manifest], tmp_path: Path) -> Iterator[_Server]:
    payload = _tar(data[0], tmp_path / "genies.tar").read_bytes()
    with _Server(payload) as running:
        yield running


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/genies.tar"


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock"))


# --- manifest ---------------------------------------------------------------------------------

def test_manifest_round_trips_and_verify_names_each_problem(data: tuple[Path, Manifest]) -> None:
    folder, manifest = data
    assert len(manifest.files) == 9 and manifest.distributions == set(DISTS)
    assert Manifest.from_json(manifest.to_json()) == manifest
    assert build_manifest(folder).to_json() == manifest.to_json()  # reproducible
    assert verify(folder, manifest) == []
    (folder / "alpha/test.json").write_text("[]")  # same name, other content
    (folder / "beta/train.json").unlink()
    (folder / "gamma/notes.txt").write_text("extra")
    text = (folder / "gamma/test.json").read_text()
    (folder / "gamma/test.json").write_text(text.replace("0", "9"))  # same size, other bytes
    assert verify(folder, manifest) == [
        "size mismatch: alpha/test.json (expected "
        f"{manifest.files['alpha/test.json'].size} bytes, found 2)",
        "missing: beta/train.json",
        f"checksum mismatch: gamma/test.json (expected sha256 {manifest.files['gamma/test.json'].sha256[:12]}..., "
        f"found {build_manifest(folder).files['gamma/test.json'].sha256[:12]}...)",
        "unexpected file: gamma/notes.txt",
    ]


def test_shipped_manifest_covers_the_66_distributions() -> None:
    manifest = load_manifest()
    assert len(manifest.distributions) == 66 and len(manifest.files) == 66 * 3
    assert {"alpaca_mmlu/train.json", "truthful_qa/test.json", "word_swap/metadata.json"} <= set(manifest.files)
    assert all(len(e.sha256) == 64 and e.size > 0 for e in manifest.files.values())


# --- download ---------------------------------------------------------------------------------

def test_download_installs_verified_data(server: _Server, data: tuple[Path, Manifest], home: Path) -> None:
    dest = home / "distributions"
    result = download(dest, urls=[server.url], progress=False, manifest=data[1])
    assert (result.path, result.files, result.source) == (dest, 9, server.url)
    assert verify(dest, data[1]) == [] and server.ranges == [None]
    assert list((home / "downloads").iterdir()) == [] and _leftovers(home) == []
    # already installed and verified: nothing is fetched again
    assert download(dest, urls=[server.url], progress=False, manifest=data[1]).source == "already installed"
    assert len(server.ranges) == 1


def test_interrupted_download_resumes_from_the_part_file(
    server: _Server, data: tuple[Path, Manifest], home: Path
) -> None:
    server.cut_after = 4000
    with pytest.raises(StoreError, match="could not get the GENIES data"):
        download(urls=[server.url], progress=False, manifest=data[1])
    part = home / "downloads" / (_download_name(server.url) + ".part")
    assert part.stat().st_size == 4000 and not (home / "distributions").exists()
    result = download(urls=[server.url], progress=False, manifest=data[1])
    assert server.ranges == [None, "bytes=4000-"]
    assert server.sent == len(server.payload)  # the second request sent only the rest
    assert result.path == home / "distributions" and verify(result.path, data[1]) == []


def test_server_ignoring_range_restarts_the_download(
    server: _Server, data: tuple[Path, Manifest], home: Path
) -> None:
    server.honor_range = False
    part = home / "downloads" / (_download_name(server.url) + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes from another file")
    result = download(urls=[server.url], progress=False, manifest=data[1])
    assert server.ranges == [f"bytes={len(b'stale bytes from another file')}-"]
    assert verify(result.path, data[1]) == []


def test_complete_part_file_is_used_without_downloading_again(
    server: _Server, data: tuple[Path, Manifest], home: Path
) -> None:
    part = home / "downloads" / (_download_name(server.url) + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(server.payload)  # stopped after the last byte, before the rename
    result = download(urls=[server.url], progress=False, manifest=data[1])
    assert server.ranges == [f"bytes={len(server.payload)}-"] and server.sent == 0
    assert verify(result.path, data[1]) == []


def test_falls_back_to_the_next_url(server: _Server, data: tuple[Path, Manifest], home: Path) -> None:
    missing = server.url.replace("genies.tar", "gone.tar")
    result = download(urls=[missing, server.url], progress=False, manifest=data[1])
    assert result.source == server.url and verify(result.path, data[1]) == []


def test_mismatching_archive_is_rejected_and_not_installed(
    server: _Server, data: tuple[Path, Manifest], home: Path
) -> None:
    entries = dict(data[1].files)
    entries["beta/train.json"] = FileEntry("0" * 64, entries["beta/train.json"].size)
    with pytest.raises(StoreError) as err:
        download(urls=[server.url], progress=False, manifest=Manifest(entries))
    message = str(err.value)
    assert "checksum mismatch: beta/train.json" in message and "\n" not in message
    assert not (home / "distributions").exists() and _leftovers(home) == []
    assert list((home / "downloads").iterdir()) == []  # the bad archive is not kept for reuse


def test_offline_error_is_one_line_saying_what_to_do(data: tuple[Path, Manifest], home: Path) -> None:
    with pytest.raises(StoreError) as err:
        download(urls=[_closed_port_url()], progress=False, manifest=data[1])
    message = str(err.value)
    assert "\n" not in message and "unreachable" in message
    assert "genies data import PATH" in message and "GENIES_DATA_DIR" in message


# --- import -----------------------------------------------------------------------------------

def test_import_from_folder_above_the_data(data: tuple[Path, Manifest], home: Path) -> None:
    folder, manifest = data
    (folder / "alpha/notes.txt").write_text("not in the manifest")
    result = import_data(folder.parent, manifest=manifest)  # the parent: the root is found
    assert result.path == home / "distributions" and result.files == 9
    assert result.ignored == ("alpha/notes.txt",)
    assert verify(result.path, manifest) == [] and verify(folder, manifest) == ["unexpected file: alpha/notes.txt"]


@pytest.mark.parametrize(("prefix", "name"), [
    ("GENIES-0123/distributions", "repo.tar.gz"), ("distributions", "genies-datasets.tar"), (".", "flat.tar")])
def test_import_from_tar_in_each_layout(
    data: tuple[Path, Manifest], home: Path, tmp_path: Path, prefix: str, name: str
) -> None:
    archive = _tar(data[0], tmp_path / name, prefix)
    result = import_data(archive, manifest=data[1])
    assert result.files == 9 and verify(result.path, data[1]) == [] and _leftovers(home) == []


def test_install_replaces_atomically_and_keeps_the_old_copy_on_failure(
    data: tuple[Path, Manifest], home: Path, tmp_path: Path
) -> None:
    folder, manifest = data
    dest = import_data(folder, manifest=manifest).path
    (dest / "alpha/stale.json").write_text("from an older install")
    broken = shutil.copytree(folder, tmp_path / "broken")
    (broken / "gamma/train.json").write_text("[]")
    with pytest.raises(ManifestMismatchError, match="gamma/train.json"):
        import_data(broken, manifest=manifest)
    assert (dest / "alpha/stale.json").exists()  # the failed import touched nothing
    import_data(folder, manifest=manifest)
    assert verify(dest, manifest) == [] and _leftovers(home) == []  # the stale file went with the swap


def test_root_search_prefers_the_folder_holding_the_data(data: tuple[Path, Manifest], tmp_path: Path) -> None:
    folder, manifest = data
    for name in DISTS:  # a folder of generator scripts named like the distributions
        (tmp_path / "source" / "aaa_scripts" / name).mkdir(parents=True)
        (tmp_path / "source" / "aaa_scripts" / name / "make.py").write_text("")
    assert find_distributions_root(tmp_path / "source", manifest) == folder
    with pytest.raises(StoreError, match="no GENIES distribution folders found"):
        find_distributions_root(tmp_path / "source" / "aaa_scripts" / "alpha", manifest)


# --- command line -----------------------------------------------------------------------------

def _app() -> typer.Typer:
    app = typer.Typer(cls=GeniesGroup)
    data_store.register(app)
    return app


def test_cli_import_prints_the_verified_count(
    data: tuple[Path, Manifest], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data_store, "load_manifest", lambda: data[1])
    result = CliRunner().invoke(_app(), ["import", str(data[0])])
    assert result.exit_code == 0, result.output
    assert "9 files verified" in result.output


def test_cli_errors_are_one_line_with_exit_code_2(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = CliRunner().invoke(_app(), ["import", str(home / "nowhere")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "no such file or folder" in result.output
    monkeypatch.setattr(data_store, "DEFAULT_URLS", (_closed_port_url(),))
    result = CliRunner().invoke(_app(), ["download"])
    assert result.exit_code == 2 and "genies data import PATH" in result.output


@pytest.mark.data
def test_import_of_the_real_data_verifies_the_shipped_manifest(genies_data_dir: Path, home: Path) -> None:
    result = CliRunner().invoke(_app(), ["import", str(genies_data_dir)])
    assert result.exit_code == 0, result.output
    assert "198 files verified" in result.output
    assert verify(home / "distributions") == []
