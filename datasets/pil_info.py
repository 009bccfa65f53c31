"""Which PIL is imported: ``make install`` swaps Pillow for the faster Pillow-SIMD fork when it builds,
and decode/resize figures mean little without saying which one produced them."""
from __future__ import annotations

import importlib.metadata
import os
from typing import Dict

import PIL


def pil_distribution() -> str:
    """The distribution ('pillow', 'pillow-simd', ...) whose files are the PIL actually imported, lower case;
    both may be installed when one sits on PYTHONPATH."""
    imported = os.path.realpath(PIL.__file__)
    for dist in importlib.metadata.distributions():
        owns = any(str(f) == "PIL/__init__.py" for f in (dist.files or []))
        if owns and os.path.realpath(str(dist.locate_file("PIL/__init__.py"))) == imported:
            return str(dist.metadata["Name"]).lower()
    return "unknown"


def pil_info() -> Dict[str, object]:
    distribution = pil_distribution()
    return {"distribution": distribution, "version": PIL.__version__, "simd": "simd" in distribution}


def pil_description() -> str:
    info = pil_info()
    return f"PIL {info['version']} ({'Pillow-SIMD' if info['simd'] else 'Pillow, not the SIMD fork'})"
