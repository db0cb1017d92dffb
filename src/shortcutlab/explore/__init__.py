"""An interactive explorer: recolor a digit and watch two models answer, live in the browser.

:class:`~shortcutlab.explore.session.Explorer` holds a dataset and the models given (each
with its SAE when it has one) and answers the page's questions: predictions, Grad-CAM and
LRP evidence, the most active SAE features and their edits, a targeted attack and the
minimal epsilon. :func:`~shortcutlab.explore.app.create_app` serves it as a FastAPI app;
``shortcutlab explore`` starts it on 127.0.0.1.
"""

from shortcutlab.explore.session import Explorer, ImageSpec, RequestError

__all__ = ["Explorer", "ImageSpec", "RequestError"]
