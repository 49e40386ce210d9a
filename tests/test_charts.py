"""``mlhooks.plugin.bar_chart_svg``: a bar chart as SVG text, read back as XML."""

from __future__ import annotations

from xml.etree import ElementTree

from mlhooks.plugin import bar_chart_svg

SVG = "{http://www.w3.org/2000/svg}"


def test_a_bar_per_value_in_order_longest_for_the_largest() -> None:
    chart = ElementTree.fromstring(bar_chart_svg({"f1": 4.0, "f0": 2.0, "f2": 0.0}, "gain", "x"))
    bars = list(chart.iter(f"{SVG}rect"))[1:]  # the background first
    widths = [float(bar.get("width", "")) for bar in bars]
    assert widths[0] > widths[1] > widths[2] == 0.0
    texts = ["".join(t.itertext()) for t in chart.iter(f"{SVG}text")]
    assert texts[0] == "gain" and texts[-1] == "x"
    assert [t for t in texts if t.startswith("f")] == ["f1f1", "f0f0", "f2f2"]  # title + label


def test_names_are_escaped_and_negative_or_empty_values_draw() -> None:
    chart = bar_chart_svg({'<b a="1">&': -3.0}, "<title>")
    parsed = ElementTree.fromstring(chart)  # well-formed: nothing a name holds breaks it
    assert '<b a="1">&' in "".join(parsed.itertext())
    assert [float(b.get("width", "")) for b in list(parsed.iter(f"{SVG}rect"))[1:]] == [0.0]
    assert ElementTree.fromstring(bar_chart_svg({}, "empty")).tag == f"{SVG}svg"
