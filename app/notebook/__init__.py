"""attnlab in a notebook: the pages' views drawn inline, offline (plotly.js from the installed plotly package).

    import attnlab
    run = attnlab.load("minilm").forward("The cat sat on the mat.")
    run.show("model")                      # the layers x heads grid
    run.show("head", layer=2, head=5)      # one head's map, with token labels
    trace = attnlab.notebook.trace(model, "Once upon", max_new_tokens=8)
    trace.show(layer=-1)                   # the new token's attention at each step

``show`` and ``trace`` return an :class:`InlineFigure` (``.figure`` the Plotly figure, ``.data`` the
arrays, ``.write_html``); a long input is drawn as the pages draw it, as a pooled overview.
This is the display layer above ``attnlab.models`` (the library never imports it;
``ForwardResult.show`` looks it up by name, as pandas finds its plotting backend).
"""

from .display import InlineFigure, set_plotly_js
from .views import VIEWS, Trace, show, trace

__all__ = ["VIEWS", "InlineFigure", "Trace", "set_plotly_js", "show", "trace"]
