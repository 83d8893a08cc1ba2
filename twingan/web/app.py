"""The Gradio page of `twingan serve`: a Translate tab and, with an index, a Search tab.

The Translate tab also offers a reference picture and attribute values when the
checkpoint was trained to take them.

The page only wires :class:`~twingan.web.handlers.WebDemo` to widgets. Safety
and offline operation are decided here:

* uploads reach the handlers as bytes read from the file Gradio stored in the
  server's own upload folder (a path outside it is refused), never as a path to
  open, and are decoded by content (:func:`~twingan.web.handlers.decode_upload`);
* Gradio's ``max_file_size`` refuses large uploads before they are stored;
* a queue runs ``WebLimits.concurrency`` requests at a time and holds at most
  ``WebLimits.queue_size`` waiting ones; the REST API that would bypass it is closed;
* no analytics, no version check, no share link, no MCP server, no server-side
  rendering; the theme's fonts are the ones Gradio ships (the page fetches nothing
  from outside the server).
"""
from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import Any, Callable

OFFLINE_ENVIRONMENT = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "GRADIO_SSR_MODE": "False",
    "GRADIO_MCP_SERVER": "False",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}
"""Set before Gradio is imported: Gradio reads some of these at import time."""

os.environ.update(OFFLINE_ENVIRONMENT)

import gradio as gr  # noqa: E402  (after the offline environment is in place)
from PIL import Image  # noqa: E402

from twingan.errors import TwinGANError  # noqa: E402
from twingan.web.handlers import SearchOutput, TranslateOutput, WebDemo  # noqa: E402

DEFAULT_K = 6
SIDE_BY_SIDE_WIDTH = 1280
"""The side-by-side strip is at the model resolution (64x32 px for a 32 px model): the page shows it enlarged by
a whole factor (nearest neighbour, pixels kept sharp) to at least this width, which fills the page's width."""
MESSAGE_OK = "**Done:** "
MESSAGE_ERROR = "**Error:** "


class UploadField(gr.Image):
    """A gr.Image (drawn by the page as one: upload, webcam, clipboard) that hands the handler raw bytes.

    gr.Image would open the stored upload with PIL itself, so a non-image
    would fail inside Gradio with a generic error; here the bytes go to
    :func:`~twingan.web.handlers.decode_upload`, which says what is wrong.
    """

    is_template = True  # Gradio's marker for "draw me as my base class"

    def __init__(self, *, max_bytes: int, **kwargs: Any) -> None:
        super().__init__(type="filepath", image_mode=None, **kwargs)
        self.max_bytes = max_bytes

    def get_config(self, cls: type | None = None) -> dict[str, Any]:
        """The page gets gr.Image's properties (Gradio reads them off the constructor's signature)."""
        return super().get_config(cls or gr.Image)

    def preprocess(self, payload: Any) -> bytes | None:  # type: ignore[override]
        if payload is None:
            return None
        if payload.url and payload.url.startswith("data:"):
            return self._from_data_url(payload.url)
        if payload.path is None:
            raise gr.Error("The upload arrived without its file; upload it again.")
        return self._read_owned_file(payload.path)

    def _read_owned_file(self, path: str) -> bytes:
        """Read (at most ``max_bytes`` + 1 of) a file Gradio stored in this server's upload folder."""
        upload_root = Path(self.GRADIO_CACHE).resolve()
        stored = Path(path).resolve()
        if not stored.is_relative_to(upload_root) or not stored.is_file():
            raise gr.Error("Refused: that file was not uploaded to this server (or was removed to save space); upload it again.")
        with open(stored, "rb") as fh:
            return fh.read(self.max_bytes + 1)  # one byte more lets decode_upload say "too large"

    def _from_data_url(self, url: str) -> bytes:
        encoded = url.partition(",")[2]
        if len(encoded) > (self.max_bytes + 3) // 3 * 4 + 4:
            raise gr.Error(f"The upload is too large; the limit is {self.max_bytes / 2**20:.1f} MB.")
        try:
            return base64.b64decode(encoded, validate=True)
        except binascii.Error as exc:
            raise gr.Error("The upload is not valid base64 image data.") from exc


def build_app(demo: WebDemo) -> gr.Blocks:
    """The page for ``demo``: Translate tab, Search tab (with an index), a line on the model, the queue.

    Gradio's upload and output cache goes to a folder inside ``demo.workdir``
    (the server's own temporary folder), removed with it.
    """
    os.environ["GRADIO_TEMP_DIR"] = str(demo.workdir / "gradio")
    limits = demo.limits
    domains = list(demo.translator.domains)
    src_default, to_default = demo.default_domains()
    with gr.Blocks(title="TwinGAN", analytics_enabled=False, delete_cache=(600, 3600)) as page:
        gr.Markdown("# TwinGAN: faces across domains")
        gr.Markdown(demo.describe(), elem_id="model-info")
        gr.Markdown(demo.training_line(), elem_id="trained-on")
        with gr.Tab("Translate", id="translate"):
            with gr.Row():
                with gr.Column():
                    photo = UploadField(
                        max_bytes=limits.max_upload_bytes, label="Photo", sources=["upload", "webcam", "clipboard"],
                        elem_id="translate-input",
                    )
                    src = gr.Dropdown(domains, value=src_default, label="The photo shows a face of")
                    to = gr.Dropdown(domains, value=to_default, label="Translate into")
                    detect = gr.Checkbox(value=True, label="Detect faces (photos of people)")
                    conditions = _condition_inputs(demo)
                    run_translate = gr.Button("Translate", variant="primary", elem_id="translate-button")
                    examples = demo.examples()
                    if examples:
                        gr.Examples(
                            [[str(e.path), e.src, e.to, e.detect] for e in examples], inputs=[photo, src, to, detect],
                            example_labels=[e.label for e in examples], label="No photo at hand? Try one of these",
                            elem_id="translate-examples", cache_examples=False,
                        )
                with gr.Column():
                    translate_status = gr.Markdown(elem_id="translate-status")
                    avatars = _gallery("Avatars", "avatars")
                    faces = _gallery("Detected faces (what the model saw)", "faces")
            with gr.Row():
                side = _image("Side by side (enlarged)", "side-by-side")
            with gr.Row():
                pasted = _image("Pasted back into the photo", "pasted")
        run_translate.click(
            _translate_handler(demo, list(conditions)), inputs=[photo, src, to, detect, *conditions.values()],
            outputs=[translate_status, avatars, faces, side, pasted], api_name="translate",
        )
        if demo.index is not None:
            _search_tab(page, demo, src_default)
    page.queue(default_concurrency_limit=limits.concurrency, max_size=limits.queue_size, api_open=False)
    return page


def _search_tab(page: gr.Blocks, demo: WebDemo, src_default: str) -> None:
    limits = demo.limits
    gallery_domains = list(demo.index.domains)
    k_default = min(DEFAULT_K, limits.max_k)
    with gr.Tab("Search", id="search"):
        with gr.Row():
            with gr.Column():
                query = UploadField(
                    max_bytes=limits.max_upload_bytes, label="Face", sources=["upload", "webcam", "clipboard"],
                    elem_id="search-input",
                )
                query_domain = gr.Dropdown(list(demo.translator.domains), value=src_default,
                                           label="The picture shows a face of")
                gallery_domain = gr.Dropdown(gallery_domains, value=gallery_domains[-1],
                                             label="Find similar faces among")
                k = gr.Slider(1, limits.max_k, value=k_default, step=1, label="Results", elem_id="search-k")
                detect = gr.Checkbox(value=True, label="Detect faces (photos of people)")
                run_search = gr.Button("Search", variant="primary", elem_id="search-button")
            with gr.Column():
                search_status = gr.Markdown(elem_id="search-status")
                query_face = _image("Your face (as the model saw it)", "query-face")
                results = _gallery("Most similar faces (rank, cosine similarity, file)", "search-results")
    run_search.click(
        _search_handler(demo), inputs=[query, query_domain, gallery_domain, k, detect],
        outputs=[search_status, query_face, results], api_name="search",
    )


def _gallery(label: str, elem_id: str) -> gr.Gallery:
    return gr.Gallery(label=label, format="png", columns=4, height="auto", elem_id=elem_id,
                      buttons=["download", "fullscreen"], interactive=False)


def _image(label: str, elem_id: str) -> gr.Image:
    return gr.Image(label=label, format="png", type="pil", elem_id=elem_id, buttons=["download", "fullscreen"],
                    interactive=False)


def _condition_inputs(demo: WebDemo) -> dict[str, gr.components.Component]:
    """Widgets for what the checkpoint was trained to take: a reference picture, attribute values."""
    inputs: dict[str, gr.components.Component] = {}
    if demo.translator.has_style:
        inputs["reference"] = UploadField(
            max_bytes=demo.limits.max_upload_bytes, label="Reference (optional): the avatar takes its colours",
            sources=["upload", "clipboard"], elem_id="translate-reference",
        )
    if demo.translator.attributes:
        groups = "; ".join(f"{name}: {', '.join(values)}" for name, values in demo.translator.attributes.items())
        inputs["attrs"] = gr.Textbox(label=f"Attributes (optional): {groups}", placeholder="hair=blue, eyes=green",
                                     max_length=200, elem_id="translate-attrs")
    return inputs


def _translate_handler(demo: WebDemo, conditions: list[str]) -> Callable[..., tuple]:
    def translate(data: bytes | None, src: str, to: str, detect: bool, *values: Any) -> tuple:
        try:
            out: TranslateOutput = demo.translate(data, src, to, detect, **dict(zip(conditions, values)))
        except TwinGANError as exc:
            return _error(exc), [], [], None, None
        return MESSAGE_OK + out.message, out.avatars, out.faces, enlarged(out.side_by_side), out.pasted

    return translate


def enlarged(image: Image.Image, width: int = SIDE_BY_SIDE_WIDTH) -> Image.Image:
    """``image`` scaled up by the smallest whole factor that makes it at least ``width`` wide (nearest neighbour)."""
    factor = max(1, -(-width // image.width))
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)


def _search_handler(demo: WebDemo) -> Callable[..., tuple]:
    def search(data: bytes | None, query_domain: str, gallery_domain: str, k: float, detect: bool) -> tuple:
        try:
            out: SearchOutput = demo.search(data, query_domain, gallery_domain, int(k), detect)
        except TwinGANError as exc:
            return _error(exc), None, []
        hits: list[tuple[Image.Image, str]] = [(hit.image, hit.caption) for hit in out.hits]
        return MESSAGE_OK + out.message, out.query_face, hits

    return search


def _error(exc: TwinGANError) -> str:
    """Visitor mistakes (WebInputError) and the toolkit's other user errors (an unknown domain) read the same."""
    return MESSAGE_ERROR + str(exc)


def launch(page: gr.Blocks, demo: WebDemo, host: str, port: int) -> None:
    """Serve ``page`` until interrupted (blocks); nothing is shared outside ``host``."""
    page.launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=False,
        max_file_size=demo.limits.max_upload_bytes,
        ssr_mode=False,
        mcp_server=False,
        enable_monitoring=False,
        footer_links=["settings"],
        show_error=False,
    )
