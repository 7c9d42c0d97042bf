"""The trigger form shared by *Train your own* and *Upload a model*: any registered attack with
its parameters (fields generated from its config), or your own trigger as PNG uploads.

File-path parameters (Blended's key image, the custom trigger's image and mask) are never text
fields here: a web form must not read files on the server. The custom trigger's pictures are
uploaded and carried in the spec itself as ``data:`` URIs (:func:`sau_core.attacks.trigger_uri`).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from dashboard import widgets
from sau_core.attacks import ATTACKS, param_schema, trigger_uri
from sau_core.data import DatasetInfo


def attack_label(name: str) -> str:
    """``BadNets (Gu et al., 2017)`` from the registry's help line."""
    return ATTACKS[name].help.split(":")[0]


def trigger_fields(
    attack: str, info: DatasetInfo | None, key: str, problems: list[str], columns: int = 3
) -> dict[str, Any]:
    """Draw the parameters of ``attack`` (keys ``{key}.{name}``) and return them; a value out of
    bounds gets a message beside its field and a line in ``problems``."""
    # parameters that name files (param(..., path=True)) are uploads or left out, never typed;
    # those recorded when planting (hidden=True: SSBA's encoder SHA-256) are not the user's
    schema = [e for e in param_schema(attack, info) if not (e.get("path") or e.get("hidden"))]
    params = widgets.render_fields(schema, key, columns=columns, problems=problems)
    if attack == "custom":
        params.update(_custom_uploads(key, problems))
    return params


def _custom_uploads(key: str, problems: list[str]) -> dict[str, str]:
    st.caption(
        "Your own trigger: the picture at the data's image size, and where it goes (a grey "
        "mask: white takes the trigger's pixel, black keeps the image). A PNG with transparency "
        "needs no mask: its alpha is the mask."
    )
    c1, c2 = st.columns(2)
    image = c1.file_uploader("Trigger image (PNG)", type=["png"], key=f"{key}.image_file")
    mask = c2.file_uploader("Mask (PNG, optional)", type=["png"], key=f"{key}.mask_file")
    out: dict[str, str] = {}
    for what, up in (("image", image), ("mask", mask)):
        if up is None:
            continue
        try:
            out[what] = trigger_uri(up.getvalue(), up.name)
        except ValueError as err:
            st.error(f"{up.name}: {err}. Upload a PNG at the data's image size.",
                     icon=":material/error:")  # fmt: skip
            problems.append(f"{what} file {up.name} unreadable")
    if "image" not in out and image is None:
        problems.append("the trigger image is missing (upload a PNG)")
    return out
