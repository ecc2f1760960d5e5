"""Family adapters by name; plugins may register more with `register`."""

from __future__ import annotations

import json
from pathlib import Path

from parity.errors import ParityError
from parity.families.base import FamilyAdapter
from parity.families.flux import FLUX
from parity.families.flux2 import FLUX2
from parity.families.flux2_klein import FLUX2_KLEIN, FLUX2_KLEIN_BASE
from parity.families.glm_image import GLM_IMAGE
from parity.families.helios import HELIOS
from parity.families.helios_pyramid import HELIOS_PYRAMID
from parity.families.hunyuan_video import HUNYUAN_VIDEO
from parity.families.longcat_image import LONGCAT_IMAGE
from parity.families.longcat_image_edit import LONGCAT_IMAGE_EDIT
from parity.families.ltx2 import LTX2
from parity.families.qwen_image import QWEN_IMAGE
from parity.families.qwen_image_edit import QWEN_IMAGE_EDIT
from parity.families.qwen_image_edit_plus import QWEN_IMAGE_EDIT_PLUS
from parity.families.qwen_image_layered import QWEN_IMAGE_LAYERED
from parity.families.sana import SANA
from parity.families.sana_video import SANA_VIDEO
from parity.families.sd3 import SD3
from parity.families.wan import WAN
from parity.families.wan_i2v import WAN_I2V
from parity.families.zimage import ZIMAGE

_ADAPTERS: dict[str, FamilyAdapter] = {}


def register(adapter: FamilyAdapter) -> FamilyAdapter:
    _ADAPTERS[adapter.name] = adapter
    return adapter


def get(name: str) -> FamilyAdapter:
    try:
        return _ADAPTERS[name]
    except KeyError:
        raise ParityError(f"unknown family {name!r}; known: {', '.join(sorted(_ADAPTERS))}") from None


def known() -> list[str]:
    """The names of the registered families (the bundled adapters and any a plugin registered), sorted."""
    return sorted(_ADAPTERS)


def detect(model_dir: Path) -> FamilyAdapter:
    """The adapter whose Diffusers pipeline class is the directory's model_index.json `_class_name`."""
    class_name = read_model_index(model_dir).get("_class_name")
    for adapter in _ADAPTERS.values():
        if class_name in adapter.diffusers_classes:
            return adapter
    raise ParityError(
        f"{model_dir}: no family adapter for pipeline class {class_name!r} "
        f"(known families: {', '.join(sorted(_ADAPTERS))}); pass --family or add an adapter"
    )


def read_model_index(model_dir: Path) -> dict:
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ParityError(f"model directory {model_dir} does not exist")
    index = model_dir / "model_index.json"
    if not index.is_file():
        raise ParityError(f"{model_dir} is not a Diffusers model directory: no model_index.json")
    try:
        data = json.loads(index.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ParityError(f"{index} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or "_class_name" not in data:
        raise ParityError(f"{index} has no _class_name: not a Diffusers pipeline directory")
    return data


register(FLUX)
register(SD3)
register(WAN)
register(ZIMAGE)
register(QWEN_IMAGE)
register(WAN_I2V)
register(QWEN_IMAGE_EDIT)
register(GLM_IMAGE)
register(QWEN_IMAGE_LAYERED)
register(QWEN_IMAGE_EDIT_PLUS)
register(HELIOS)
register(HELIOS_PYRAMID)
register(FLUX2)
register(HUNYUAN_VIDEO)
register(LTX2)
register(FLUX2_KLEIN)
register(FLUX2_KLEIN_BASE)
register(SANA)
register(LONGCAT_IMAGE)
register(SANA_VIDEO)
register(LONGCAT_IMAGE_EDIT)
