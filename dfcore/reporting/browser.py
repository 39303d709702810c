"""An interactive browser of images and their heatmaps (ipywidgets), for the notebooks opened in JupyterLab."""

from __future__ import annotations

import functools

import matplotlib.pyplot as plt
import pandas as pd

from dfcore.reporting.figures import plot_overlays


def browser(table: pd.DataFrame, *, image_fn, maps_fn, methods, group: str = "outcome", title_fn=str):
    """Returns a widget: a ``group`` dropdown (e.g. outcome), an index slider over that group's rows of ``table``
    and a method dropdown, above the chosen image and its heatmap.

    ``image_fn(row)`` returns the HxWx3 uint8 image to show, ``maps_fn(row, method)`` its HxW map in
    [0, 1] and ``title_fn(row)`` its title. Maps are computed when first shown and then kept, so
    browsing is quick after the first look. Built only on request: papermill runs have no frontend.
    """
    import ipywidgets as widgets
    from IPython.display import display

    table = table.reset_index(drop=True)
    groups = list(dict.fromkeys(table[group]))
    pick_group = widgets.Dropdown(options=[(f"{g} ({(table[group] == g).sum()})", g) for g in groups],
                                  description=group)
    pick_index = widgets.IntSlider(min=0, max=0, description="index", continuous_update=False)
    pick_method = widgets.Dropdown(options=list(methods), description="method")
    shown = widgets.Output()
    cached_map = functools.lru_cache(maxsize=512)(lambda index, method: maps_fn(table.loc[index], method))

    def rows():
        return table[table[group] == pick_group.value]

    def draw(*_):
        row = rows().iloc[pick_index.value]
        heat = cached_map(row.name, pick_method.value)
        fig = plot_overlays([image_fn(row)], {pick_method.value: heat[None]}, [title_fn(row)], suptitle="", ncols=1)
        with shown:
            shown.clear_output(wait=True)
            display(fig)
        plt.close(fig)

    def change_group(*_):
        pick_index.unobserve(draw, names="value")  # one drawing per change, not one per slider adjustment
        pick_index.value = 0
        pick_index.max = max(len(rows()) - 1, 0)
        pick_index.observe(draw, names="value")
        draw()

    pick_group.observe(change_group, names="value")
    pick_method.observe(draw, names="value")
    change_group()
    return widgets.VBox([widgets.HBox([pick_group, pick_index, pick_method]), shown])
