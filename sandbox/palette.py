"""Reading a prompt: which scene it paints (hills, sea, lights, abstract) and in which colours.

Words pick the time of day (the sky), the land, colour accents and a mood; Vietnamese works without
diacritics too ("bình minh" reads as "binh minh", dawn). Unknown words still give every prompt its own tints.
"""

from __future__ import annotations

import colorsys
import hashlib
import random
import re
import unicodedata
from dataclasses import dataclass

RGB = tuple[int, int, int]


def seed_from(*parts: object) -> int:
    """A stable 64-bit seed from any parts (Python's hash() changes between processes)."""
    text = "\x1f".join(str(part) for part in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


# --- colour helpers ---------------------------------------------------------------------------------------


def hex_rgb(value: str) -> RGB:
    return int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16)


def mix(a: RGB, b: RGB, t: float) -> RGB:
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t), round(a[2] + (b[2] - a[2]) * t))


def hls(hue: float, light: float, sat: float) -> RGB:
    r, g, b = colorsys.hls_to_rgb((hue % 360) / 360, min(max(light, 0.0), 1.0), min(max(sat, 0.0), 1.0))
    return round(r * 255), round(g * 255), round(b * 255)


def _adjust(
    color: RGB, *, toward: float | None = None, amount: float = 0.0, light: float = 1.0, sat: float = 1.0
) -> RGB:
    """Pull a colour's hue toward `toward` degrees by `amount`, and scale its lightness and saturation."""
    h, lum, s = colorsys.rgb_to_hls(*(c / 255 for c in color))
    hue = h * 360
    if toward is not None:
        hue += ((toward - hue + 180) % 360 - 180) * amount
    return hls(hue, lum * light, s * sat)


def smooth(t: float) -> float:
    t = min(max(t, 0.0), 1.0)
    return t * t * (3 - 2 * t)


# --- reading the prompt -----------------------------------------------------------------------------------


def _plain_words(prompt: str) -> str:
    """Lower-case ASCII words without Midjourney parameters ("cà phê --ar 3:4" -> "ca phe")."""
    text = prompt.split(" --", 1)[0].lower().replace("đ", "d")
    text = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    return " ".join(re.findall(r"[a-z0-9]+", text))


def _has(text: str, keys: str) -> bool:
    """Does the word text contain any of the comma-separated keys (whole words or phrases)?"""
    return any(re.search(rf"\b{re.escape(key.strip())}\b", text) for key in keys.split(","))


@dataclass(frozen=True)
class Sky:
    stops: tuple[str, ...]  # top of the sky down to the horizon
    sun: str
    haze: str  # what distant land fades into
    sun_height: float  # sun centre as a share of the sky's height
    night: bool = False


SKIES = {
    "dawn": Sky(("#38457a", "#8d7bab", "#e6a1a4", "#fbd2a8"), "#fff3dc", "#f0c3ad", 0.72),
    "day": Sky(("#2c6cb8", "#5b9ad8", "#a6cbe8", "#e4eef0"), "#fffbea", "#c9dde6", 0.3),
    "sunset": Sky(("#231a4a", "#773a70", "#dc6659", "#f8b35f"), "#ffe3a3", "#e49a78", 0.78),
    "night": Sky(("#050918", "#0f1838", "#232d5c", "#43467a"), "#eef0f7", "#343a68", 0.35, night=True),
}
TIME_WORDS = {
    "dawn": "dawn,sunrise,morning,daybreak,binh minh,ban mai,sang som",
    "sunset": "sunset,dusk,evening,golden hour,twilight,hoang hon,chieu",
    "night": "night,midnight,moon,moonlight,stars,starry,neon,cyberpunk,dem,toi",
    "day": "day,noon,sunny,summer,afternoon,bright,trua,nang",
}
LANDS = {
    "#2d5a45": "forest,tree,trees,pine,jungle,woods,rung,cay",
    "#c48a55": "desert,dune,dunes,sand,canyon,sa mac",
    "#4b587a": "mountain,mountains,alps,peak,peaks,cliff,nui",
    "#d7e0ec": "snow,snowy,winter,ice,glacier,frost,tuyet",
    "#5a3a2a": "coffee,cafe,ca phe,wood,wooden,brown,chocolate,tea,tra",
    "#6f9a4a": "field,meadow,grass,spring,garden,farm,rice,lua,dong",
    "#a9542f": "autumn,fall,maple,rust,thu",
}
COLOR_HUES = {
    "red": 2,
    "crimson": 350,
    "orange": 26,
    "amber": 38,
    "gold": 44,
    "golden": 44,
    "yellow": 52,
    "lime": 88,
    "green": 130,
    "emerald": 150,
    "teal": 174,
    "turquoise": 176,
    "cyan": 188,
    "blue": 214,
    "navy": 226,
    "indigo": 244,
    "violet": 266,
    "lavender": 262,
    "purple": 276,
    "magenta": 308,
    "pink": 330,
    "rose": 344,
    "vang": 50,
    "tim": 276,
    "hong": 335,
    "xanh": 200,
}
SCENE_WORDS = {
    "sea": "sea,ocean,beach,lake,coast,wave,waves,bay,island,river,harbor,harbour,shore,bien,ho,song,vinh",
    "lights": "city,street,cafe,coffee,ca phe,shop,bar,restaurant,room,interior,kitchen,neon,cyberpunk,lights,"
    "bokeh,window,quan,pho,tea,tra,lantern,festival,market",
    "abstract": "abstract,pattern,texture,geometric,gradient,fluid,logo,swirl,marble,pastel",
    "hills": "landscape,mountain,mountains,hill,hills,forest,valley,field,meadow,desert,dune,countryside,snow,winter",
}
STOP_WORDS = {"a", "an", "the", "of", "in", "on", "at", "and", "with", "for", "to", "by", "tones", "style"}


@dataclass(frozen=True)
class Palette:
    sky: tuple[RGB, ...]
    sun: RGB
    haze: RGB
    land: RGB
    accents: tuple[RGB, ...]  # from colour words (neon and cyberpunk bring their own); may be empty
    tints: tuple[RGB, ...]  # two hues read from the prompt's other words: every prompt gets its own
    lights: tuple[RGB, ...]  # the lamps of the time of day: sun, haze, horizon (amber street lamps at night)
    sun_height: float
    night: bool


@dataclass(frozen=True)
class Scene:
    kind: str  # hills | sea | lights | abstract
    palette: Palette
    forest: bool
    peaks: bool
    cup: bool


def scene_for(prompt: str) -> Scene:
    """The scene a prompt paints: its kind from subject words, its palette from time, colour and mood words."""
    text = _plain_words(prompt)
    words = [w for w in text.split() if w not in STOP_WORDS] or ["sandbox"]
    rng = random.Random(seed_from("scene", text))
    kind = next((k for k, keys in SCENE_WORDS.items() if _has(text, keys)), None)
    kind = kind or rng.choice(("hills", "hills", "sea", "abstract"))
    return Scene(
        kind=kind,
        palette=_palette(text, words, rng),
        forest=_has(text, LANDS["#2d5a45"]),
        peaks=_has(text, LANDS["#4b587a"]),
        cup=_has(text, "coffee,cafe,ca phe,tea,tra,cup,mug,latte,espresso"),
    )


def _palette(text: str, words: list[str], rng: random.Random) -> Palette:
    time = next((t for t, keys in TIME_WORDS.items() if _has(text, keys)), None)
    sky = SKIES[time or rng.choice(("dawn", "day", "sunset", "sunset", "night"))]
    stops = [hex_rgb(c) for c in sky.stops]
    sun, haze = hex_rgb(sky.sun), hex_rgb(sky.haze)
    word_hue = seed_from(*words) % 360
    land = next((hex_rgb(c) for c, keys in LANDS.items() if _has(text, keys)), hls(word_hue, 0.3, 0.32))
    hues = [hue for name, hue in COLOR_HUES.items() if _has(text, name)]
    if not hues and _has(text, "neon,cyberpunk,synthwave,vaporwave"):
        hues = [312, 186, 276]

    toward, amount, light, sat = _mood(text, hues)
    if toward is not None or light != 1.0 or sat != 1.0:
        stops = [_adjust(c, toward=toward, amount=amount, light=light, sat=sat) for c in stops]
        haze = _adjust(haze, toward=toward, amount=amount, light=light, sat=sat)
        land = _adjust(land, toward=toward, amount=amount * 0.6, light=light, sat=sat)
    accents = tuple(hls(h, 0.62, 0.8) for h in hues)
    tints = tuple(hls(word_hue + 40 * i, 0.6, 0.5) for i in range(2))
    lights = (sun, haze, stops[-1], mix(stops[-1], stops[-2], 0.5))
    if sky.night:
        lights = (hex_rgb("#ffb46e"), hex_rgb("#ffd8a0"), sun, haze)
    return Palette(tuple(stops), sun, haze, land, accents, tints, lights, sky.sun_height, sky.night)


def _mood(text: str, hues: list[int]) -> tuple[float | None, float, float, float]:
    """(hue to lean toward, how far, lightness scale, saturation scale) from mood and colour words."""
    toward, amount, light, sat = None, 0.0, 1.0, 1.0
    if hues:
        toward, amount = float(hues[0]), 0.3
    if _has(text, "warm,cozy,cosy,amber,golden,am ap,tong am,sepia,vintage"):
        toward, amount, sat = 34.0, 0.6, 1.1
    elif _has(text, "cool,cold,icy,frozen,lanh,tong lanh"):
        toward, amount = 212.0, 0.4
    if _has(text, "pastel,soft,dreamy,airy,minimal,minimalist,toi gian"):
        light, sat = 1.12, sat * 0.7
    if _has(text, "moody,dark,noir,gloomy,storm,stormy"):
        light, sat = 0.7, sat * 0.8
    if _has(text, "vivid,vibrant,neon,saturated,colorful,colourful"):
        sat *= 1.35
    return toward, amount, light, sat
