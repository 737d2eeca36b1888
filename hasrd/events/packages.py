"""Sound-event clips from installed Debian packages whose file names say what they are.

:data:`TABLE` is a curated list of ``(package, glob under /usr/share, class label, descriptions
or None)``: only files whose name names the event unambiguously are mapped (a bell, a phone
ringing, applause, a trumpet), never interface sounds named after what they signal ("complete",
"message", "dialog-warning"). A label is a class of :mod:`hasrd.events.synth` or one of
:data:`EXTRA_DESCRIPTIONS`; ``None`` descriptions means the label's own. Nothing is downloaded:
a package whose ``doc/PKG/copyright`` is not under the share root counts as not installed and is
skipped with a note.

Each clip's licence is read from its package's ``doc/PKG/copyright``: in the machine-readable
(DEP-5) format, the ``License:`` (and ``Copyright:``) of the last ``Files:`` paragraph whose
pattern matches the file; in free text, the first licence named (GPL/LGPL with version and
"or later", CC-BY(-SA), Expat, public domain). A file whose licence cannot be found is skipped.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

from .synth import DESCRIPTIONS

#: where the package files are looked for (the tests point it at a fake tree)
SHARE_ROOT = Path("/usr/share")


@dataclass(frozen=True)
class Source:
    """Files of ``package`` matching ``pattern`` (a glob under the share root) are clips of ``label``."""

    package: str
    pattern: str
    label: str
    descriptions: tuple[str, ...] | None = None


@dataclass(frozen=True)
class PackageClip:
    """One file found: where it is, its class and descriptions, and its licence."""

    package: str
    path: Path
    file: str  # path relative to the share root
    label: str
    descriptions: tuple[str, ...]
    licence: str
    copyright: str


#: descriptions of the classes that only packages provide
EXTRA_DESCRIPTIONS: dict[str, list[str]] = {
    "alarm": ["an alarm going off", "an alarm clock ringing", "an alarm sounding", "a loud alarm rings"],
    "bird": ["a bird singing", "birdsong", "a small bird chirping", "a songbird trills"],
    "camera_shutter": ["a camera shutter clicks", "the click of a camera taking a photo", "a camera shutter release",
                       "someone takes a picture with a camera"],
    "cello": ["a cello playing", "a note bowed on a cello", "the deep tone of a cello", "a cello melody"],
    "coins": ["coins jingling", "coins clinking", "the sound of coins", "a handful of coins"],
    "crowd": ["crowd noise", "a noisy crowd", "a crowd of people making noise", "the roar of a crowd"],
    "drip": ["water dripping", "a drop of water falls", "a drip", "a single water drop"],
    "explosion": ["an explosion", "a loud blast", "something explodes", "the boom of an explosion"],
    "guitar": ["a guitar playing", "a guitar strummed", "notes plucked on a guitar", "an acoustic guitar"],
    "harp": ["a harp playing", "strings plucked on a harp", "a harp glissando", "the notes of a harp"],
    "harpsichord": ["a harpsichord playing", "notes on a harpsichord", "a plucked harpsichord chord",
                    "a short harpsichord phrase"],
    "horn": ["a car horn honking", "a klaxon sounding", "a vehicle horn blares", "someone honks a horn"],
    "laughter": ["someone laughing", "laughter", "a person laughs", "a short laugh"],
    "phone_ring": ["a telephone ringing", "a phone rings", "an incoming call ringtone", "the ring of a telephone"],
    "piano": ["a piano playing", "notes on a piano", "a piano chord", "someone plays the piano"],
    "snore": ["someone snoring", "a person snoring in their sleep", "loud snoring", "the sound of snoring"],
    "splash": ["a splash of water", "something splashes into water", "a splash", "water splashing"],
    "trumpet": ["a trumpet playing", "a trumpet fanfare", "notes blown on a trumpet", "a brass trumpet sounds"],
    "typing": ["typing on a typewriter", "keys clacking", "a typewriter typing", "someone types on a keyboard"],
    "xylophone": ["a xylophone playing", "notes struck on a xylophone", "a xylophone melody",
                  "wooden bars of a xylophone"],
}

_FD = "sounds/freedesktop/stereo/"
_ICONS = "sounds/sound-icons/"

TABLE: tuple[Source, ...] = (
    Source("sound-theme-freedesktop", _FD + "bell.oga", "bell"),
    Source("sound-theme-freedesktop", _FD + "alarm-clock-elapsed.oga", "alarm",
           ("an alarm clock ringing", "an alarm clock goes off", "a wake-up alarm sounding", "an alarm rings")),
    Source("sound-theme-freedesktop", _FD + "camera-shutter.oga", "camera_shutter"),
    Source("sound-theme-freedesktop", _FD + "phone-incoming-call.oga", "phone_ring"),
    Source("sound-theme-freedesktop", _FD + "phone-outgoing-busy.oga", "beep",
           ("a telephone busy signal", "a busy tone on a phone line", "the beeps of an engaged phone line",
            "a phone busy signal beeping")),
    Source("sound-theme-freedesktop", _FD + "phone-outgoing-calling.oga", "beep",
           ("a telephone ringback tone", "the tone of a call being placed", "a phone ringing at the other end",
            "beeps heard while a call connects")),
    Source("oxygen-sounds", "sounds/Oxygen-Im-Phone-Ring.ogg", "phone_ring"),
    Source("sound-icons", _ICONS + "canary-long.wav", "bird",
           ("a canary singing", "a small bird chirping", "birdsong of a canary", "a songbird trills")),
    Source("sound-icons", _ICONS + "cembalo-*.wav", "harpsichord"),
    Source("sound-icons", _ICONS + "electric-piano-*.wav", "piano",
           ("an electric piano", "notes on an electric piano", "an electric piano chord", "a keyboard plays electric piano")),
    Source("sound-icons", _ICONS + "guitar-*.wav", "guitar"),
    Source("sound-icons", _ICONS + "piano-*.wav", "piano"),
    Source("sound-icons", _ICONS + "trumpet-*.wav", "trumpet"),
    Source("sound-icons", _ICONS + "violoncello-*.wav", "cello"),
    Source("sound-icons", _ICONS + "xylofon.wav", "xylophone"),
    Source("heroes-sound-effects", "games/heroes/sfx/claxon.wav", "horn"),
    Source("heroes-sound-effects", "games/heroes/sfx/coins.wav", "coins"),
    Source("heroes-sound-effects", "games/heroes/sfx/explo01.wav", "explosion"),
    Source("heroes-sound-effects", "games/heroes/sfx/foule*.wav", "crowd"),  # French "foule": crowd
    Source("frozen-bubble-data", "games/frozen-bubble/snd/applause.ogg", "clap",
           ("an audience applauding", "applause from a crowd", "people clapping their hands", "a round of applause")),
    Source("frozen-bubble-data", "games/frozen-bubble/snd/snore.ogg", "snore"),
    Source("frozen-bubble-data", "games/frozen-bubble/snd/typewriter.ogg", "typing",
           ("a typewriter typing", "keys of a typewriter clacking", "someone types on a typewriter", "typewriter keys")),
    Source("tuxpaint-data", "tuxpaint/sounds/typewriterbell.wav", "bell",
           ("a typewriter bell dings", "the ding of a typewriter bell", "a small bell rings once",
            "a bell dings at the end of a line")),
    Source("tuxpaint-data", "tuxpaint/sounds/keyclick.wav", "typing",
           ("a single key click on a keyboard", "a keyboard key is pressed", "the click of a key", "a key clicks")),
    Source("tuxpaint-data", "tuxpaint/sounds/giggle.wav", "laughter",
           ("a child giggling", "someone giggles", "a little giggle", "giggling")),
    Source("tuxpaint-data", "tuxpaint/sounds/harp.wav", "harp"),
    Source("tuxpaint-plugins-default", "tuxpaint/sounds/magic/rain.ogg", "rain"),
    Source("tuxpaint-plugins-default", "tuxpaint/sounds/magic/drip.wav", "drip"),
    Source("pingus-data", "games/pingus/data/sounds/splash.wav", "splash"),
)


def descriptions_for(label: str) -> list[str]:
    """The descriptions of a class (a synthesised one or one of :data:`EXTRA_DESCRIPTIONS`)."""
    if label in DESCRIPTIONS:
        return list(DESCRIPTIONS[label])
    if label in EXTRA_DESCRIPTIONS:
        return list(EXTRA_DESCRIPTIONS[label])
    raise ValueError(f"class {label!r} has no descriptions")


def copyright_file(package: str, root: Path | None = None) -> Path:
    """Where Debian keeps the copyright file of ``package``."""
    return Path(SHARE_ROOT if root is None else root) / "doc" / package / "copyright"


def _paragraphs(text: str) -> list[dict[str, str]]:
    """The fields of each paragraph of a DEP-5 file: first-line value, continuation lines joined by newlines."""
    out: list[dict[str, str]] = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key is not None:
                fields[key] += "\n" + line.strip()
            elif ":" in line and not line.startswith("#"):
                key, value = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if fields:
            out.append(fields)
    return out


def _matches(file: str, patterns: list[str]) -> bool:
    """Whether an installed file (relative to the share root) is one a ``Files:`` pattern names
    (the patterns are paths in the source tree, so they are matched against the path's tail)."""
    return any(fnmatch.fnmatchcase(file, p) or fnmatch.fnmatchcase(file, "*/" + p) for p in patterns)


_FREE_TEXT = (
    (r"GNU (?:Lesser|Library) General Public License", "LGPL"),
    (r"GNU General Public License", "GPL"),
    (r"Creative Commons Attribution[- ]Share[- ]?Alike", "CC-BY-SA"),
    (r"Creative Commons Attribution", "CC-BY"),
    (r"Permission is hereby granted, free of charge", "Expat"),
    (r"public domain", "public-domain"),
)


def _free_text_licence(text: str) -> str | None:
    """The first licence a free-text copyright file names, as a short string (None if none)."""
    found = []
    for pattern, name in _FREE_TEXT:
        m = re.search(pattern, text, flags=re.IGNORECASE)
        if m:
            found.append((m.start(), m.end(), name))
    if not found:
        return None
    _, end, name = min(found)
    window = " ".join(text[end:end + 400].split())
    if name in ("GPL", "LGPL"):
        version = re.search(r"version (\d+(?:\.\d+)?)", window)
        if version:
            name += "-" + version.group(1)
        if re.search(r"any later version", window, flags=re.IGNORECASE):
            name += "+"
    elif name.startswith("CC-"):
        version = re.match(r"\D{0,40}?(\d\.\d)", window)
        if version:
            name += "-" + version.group(1)
    return name


def read_licence(package: str, file: str, root: Path | None = None) -> tuple[str, str] | None:
    """``(licence, copyright)`` of ``file`` (relative to the share root) in ``package``, read from
    its copyright file; None when the file is missing or names no licence."""
    path = copyright_file(package, root)
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.lstrip().lower().startswith("format:"):
        licence = _free_text_licence(text)
        return None if licence is None else (licence, f"see {path}")
    best = None
    for para in _paragraphs(text):
        if "files" in para and "license" in para and _matches(file, para["files"].split()):
            holders = ""
            for line in (h.strip() for h in para.get("copyright", "").splitlines()):
                if line:  # a line ending in a comma goes on, another starts the next holder
                    holders += line if not holders else (" " if holders.endswith(",") else "; ") + line
            best = (para["license"].splitlines()[0].strip(), holders or f"see {path}")
    return best


def find_clips(root: Path | None = None, table: tuple[Source, ...] = TABLE) -> tuple[list[PackageClip], list[str]]:
    """The clips of :data:`TABLE` found under ``root`` (default :data:`SHARE_ROOT`), sorted by
    file within the table's order, and one note for each package or file that was skipped."""
    root = Path(SHARE_ROOT if root is None else root)
    clips: list[PackageClip] = []
    notes: list[str] = []
    missing: set[str] = set()
    seen: set[Path] = set()
    for src in table:
        if not copyright_file(src.package, root).is_file():
            if src.package not in missing:
                notes.append(f"{src.package}: not installed (no {copyright_file(src.package, root)}), skipped")
                missing.add(src.package)
            continue
        files = sorted(p for p in root.glob(src.pattern) if p.is_file())
        if not files:
            notes.append(f"{src.package}: nothing matches {src.pattern}, skipped")
        for path in files:
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            rel = path.relative_to(root).as_posix()
            got = read_licence(src.package, rel, root)
            if got is None:
                notes.append(f"{src.package}: no licence found for {rel} in {copyright_file(src.package, root)}, skipped")
                continue
            descriptions = tuple(src.descriptions) if src.descriptions else tuple(descriptions_for(src.label))
            clips.append(PackageClip(src.package, path, rel, src.label, descriptions, *got))
    return clips, notes
