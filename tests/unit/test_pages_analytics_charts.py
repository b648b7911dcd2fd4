"""The chart helpers draw what they are given: exact money labels from integer minor units, the
waterfall's steps in order with losses downwards, and clicks mapped back to drill keys."""

from __future__ import annotations

from dashboard import charts


def rows_from_the_top(fig) -> list[str]:
    """The category rows of a figure's y axis as drawn, from the top down: plotly places a category
    axis's categories in the order the traces first name them, upwards, unless its range (or
    ``autorange="reversed"``) turns it over."""
    rows = list(dict.fromkeys(str(y) for trace in fig.data for y in (trace.y or ())))
    axis = fig.layout.yaxis
    turned = axis.autorange == "reversed" or (axis.range is not None and axis.range[0] > axis.range[1])
    return rows if turned else rows[::-1]


def cell(heat, row: str, col: str, of: str = "z"):
    """A heat map's value (or text) at a row and column, by their labels."""
    return getattr(heat, of)[list(heat.y).index(row)][list(heat.x).index(col)]


class TestWaterfall:
    def test_steps_labels_and_signs(self):
        fig = charts.waterfall(100_000, {"new": 30_000, "expansion": 5_000, "contraction": 2_000, "churn": 12_000,
                                         "reactivation": 2_456, "fx": -44}, 123_412, currency="USD")
        trace = fig.data[0]
        keys = [c[0] for c in trace.customdata]
        assert keys == ["start", "new", "expansion", "reactivation", "contraction", "churn", "fx", "end"]
        assert list(trace.measure) == ["absolute"] + ["relative"] * 6 + ["total"]
        # One row a step, from the top, named with its exact amount; losses drawn leftwards; the
        # floats are only the bar geometry.
        assert list(trace.y) == ["Starting MRR  $1,000.00", "New  +$300.00", "Expansion  +$50.00",
                                 "Reactivation  +$24.56", "Contraction  -$20.00", "Churn  -$120.00",
                                 "Exchange rates  -$0.44", "Ending MRR  $1,234.12"]
        assert trace.orientation == "h" and rows_from_the_top(fig) == list(trace.y)  # Starting MRR on top
        assert list(trace.x[:7]) == [1000.0, 300.0, 50.0, 24.56, -20.0, -120.0, -0.44]

    def test_a_click_on_a_step_selects_its_drill_entry(self):
        # The bars carry the picker's ids (a bare step name matched no entry: clicks did nothing).
        fig = charts.waterfall(1_000, {"new": 300, "churn": 100, "fx": 5}, 1_205, currency="USD",
                               drill_keys=(("new", "mrr_movements||new|"), ("churn", "mrr_movements||churn|")))
        keys = [c[0] for c in fig.data[0].customdata]
        assert keys == ["start", "mrr_movements||new|", "mrr_movements||churn|", "fx", "end"]
        event = {"selection": {"points": [{"customdata": list(fig.data[0].customdata[2])}]}}
        assert charts.selected_keys(event) == ["mrr_movements||churn|"]

    def test_zero_decimal_currency(self):
        fig = charts.waterfall(1_200, {"new": 800}, 2_000, currency="JPY")
        assert list(fig.data[0].y) == ["Starting MRR  ¥1,200", "New  +¥800", "Ending MRR  ¥2,000"]
        assert fig.layout.xaxis.tickprefix == "¥"


class TestPoints:
    def test_bars_carry_drill_keys_and_exact_hover_text(self):
        pts = [charts.Point("gross_revenue|||tier=premium", "premium", 1_999_999),
               charts.Point("gross_revenue|||tier=platinum", "platinum", 5)]
        fig = charts.bars(pts, unit="money", currency="EUR")
        assert [list(c) for c in fig.data[0].customdata] == [["gross_revenue|||tier=premium", "€19,999.99"],
                                                              ["gross_revenue|||tier=platinum", "€0.05"]]

    def test_percent_line_and_missing_values(self):
        fig = charts.line([charts.Point("k1", "2026-01-01", 0.031), charts.Point("k2", "2026-02-01", None)],
                          unit="percent")
        assert list(fig.data[0].y)[0] == 3.1 and list(fig.data[0].y)[1] is None
        assert [c[1] for c in fig.data[0].customdata] == ["3.1%", "n/a"]

    def test_a_point_s_hover_names_its_month_or_its_day(self):
        # "Nov 1, 2026 $23,771.38" on a chart of MRR at the end of each month.
        months = charts.line([charts.Point("a", "2026-10-01", 1), charts.Point("b", "2026-11-01", 2)], unit="count")
        days = charts.line([charts.Point("a", "2026-11-01", 1), charts.Point("b", "2026-11-02", 2)], unit="count")
        assert (months.layout.xaxis.hoverformat, days.layout.xaxis.hoverformat) == ("%b %Y", "%Y-%m-%d")
        # Bars over time too ("Nov 1, 2026" for November's revenue); bars by category have no dates.
        bars = charts.bars([charts.Point("a", "2026-10-01", 1), charts.Point("b", "2026-11-01", 2)], unit="count")
        tiers = charts.bars([charts.Point("a", "premium", 1), charts.Point("b", "platinum", 2)], unit="count")
        assert (bars.layout.xaxis.hoverformat, tiers.layout.xaxis.hoverformat) == ("%b %Y", None)

    def test_heatmap_cells_are_clickable_through_an_overlay(self):
        cells = {("2026-01", "M0"): 1.0, ("2026-01", "M1"): 0.9, ("2026-02", "M0"): 1.0}
        fig = charts.heatmap(["2026-01", "2026-02"], ["M0", "M1"], cells, keys={("2026-01", "M1"): "cohort|2026-02-01||"})
        overlay = fig.data[1]
        assert len(overlay.x) == 3  # one clickable marker per filled cell, none for the empty one
        assert "cohort|2026-02-01||" in [c[0] for c in overlay.customdata]
        # Each marker sits on its own cell, and says that cell's value on hover.
        for x, y, data in zip(overlay.x, overlay.y, overlay.customdata, strict=True):
            assert cell(fig.data[0], y, x, "text") == data[1]

    def test_rows_read_from_the_top_with_their_values_written_in(self):
        cells = {("2026-01", "M0"): 1.0, ("2026-01", "M1"): 0.9, ("2026-02", "M0"): 1.0, ("2026-03", "M0"): 0.5}
        fig = charts.heatmap(["2026-01", "2026-02", "2026-03"], ["M0", "M1"], cells)
        assert rows_from_the_top(fig) == ["2026-01", "2026-02", "2026-03"]
        heat = fig.data[0]
        assert [cell(heat, r, "M0", "text") for r in ("2026-01", "2026-02", "2026-03")] == ["100.0%", "100.0%", "50.0%"]
        assert cell(heat, "2026-01", "M1", "text") == "90.0%" and cell(heat, "2026-02", "M1", "text") == ""
        assert cell(heat, "2026-03", "M0") == 50.0

    def test_no_chart_turns_an_axis_with_autorange_reversed(self):
        # Plotly writes autorange="reversed" back as True with the range it found; Streamlit's copy of
        # the figure then reads as changed and plotly draws the whole chart again (25 ms for the
        # cohort heat map). Rows read from the top by a range given upside down, or by their order.
        pts = [charts.Point(f"r|{k}", k, v, series=s) for s, k, v in (("a", "Too expensive", 3), ("b", "Moved", 2),
                                                                       ("a", "Moved", 1), ("b", "Other", 4))]
        figs = {
            "bars": charts.bars(pts, unit="count", horizontal=True, stacked=True),
            "waterfall": charts.waterfall(1_000, {"new": 300, "churn": 100}, 1_200, currency="USD"),
            "heatmap": charts.heatmap(["2026-01", "2026-02"], ["M0"], {("2026-01", "M0"): 1.0, ("2026-02", "M0"): 0.9}),
        }
        for name, fig in figs.items():
            assert fig.layout.yaxis.autorange != "reversed", name
        assert rows_from_the_top(figs["bars"]) == ["Too expensive", "Moved", "Other"]
        assert rows_from_the_top(figs["waterfall"])[0].startswith("Starting MRR")
        assert rows_from_the_top(figs["heatmap"]) == ["2026-01", "2026-02"]


class TestSelection:
    def test_selected_keys_in_click_order_without_repeats(self):
        event = {"selection": {"points": [{"customdata": ["a|x", "$1"]}, {"customdata": ["b", "$2"]},
                                          {"customdata": ["a|x", "$1"]}, {"x": 3}]}}
        assert charts.selected_keys(event) == ["a|x", "b"]

    def test_no_selection(self):
        assert charts.selected_keys(None) == []
        assert charts.selected_keys({"selection": {"points": []}}) == []


class TestSoFar:
    def test_a_cohort_month_not_ended_is_labelled_and_not_coloured(self):
        fig = charts.heatmap(["2026-10", "2026-11"], ["M0", "M1"],
                             {("2026-10", "M0"): 1.0, ("2026-10", "M1"): 0.993, ("2026-11", "M0"): 1.0},
                             partial={("2026-10", "M1"), ("2026-11", "M0")})
        heat = fig.data[0]
        assert cell(heat, "2026-10", "M1") is None and cell(heat, "2026-11", "M0") is None
        assert cell(heat, "2026-10", "M0") == 100.0
        assert cell(heat, "2026-10", "M1", "text") == "<i>99.3%</i>" and cell(heat, "2026-10", "M0", "text") == "100.0%"
        assert "so far" in fig.data[1].customdata[1][1]

    def test_a_month_not_ended_is_labelled_once_above_its_highest_point(self):
        # Early in a month the three churn lines are near zero there: one label each ran together.
        pts = [charts.Point(f"{s}|{m}", m, v, series=s, partial=m == "2026-12")
               for s, vals in (("Member churn", (0.031, 0.004)), ("Voluntary", (0.02, 0.003)),
                               ("Involuntary", (0.011, 0.001)))
               for m, v in zip(("2026-11", "2026-12"), vals, strict=True)]
        fig = charts.line(pts, unit="percent")
        labels = [t for trace in fig.data for t in (trace.text or ()) if t]
        assert labels == ["so far"]
        labelled = next(trace for trace in fig.data if "so far" in (trace.text or ()))
        assert labelled.name == "Member churn (so far)"
        # Every series' point still says so on hover.
        assert all("so far" in c[1] for trace in fig.data if trace.name.endswith("(so far)")
                   for c in trace.customdata[1:])

    def test_the_label_sits_on_the_side_the_dotted_line_does_not_come_from(self):
        # Centred above the point, "so far" was crossed by a line falling into it from the left.
        def position(values):
            pts = [charts.Point(m, m, v, partial=m == "2026-12") for m, v in zip(("2026-11", "2026-12"), values,
                                                                                   strict=True)]
            return next(t for t in charts.line(pts, unit="count").data if "so far" in (t.text or ())).textposition
        assert position((10, 4)) == "bottom left"
        assert position((4, 10)) == position((4, 4)) == "top left"

    def test_a_range_of_one_period_still_names_its_series(self):
        # Only "so far" points: the dotted traces carry the legend, else the lines had no names.
        pts = [charts.Point(s, "2026-12-01", v, series=s, partial=True) for s, v in (("All", 0.02), ("Voluntary", 0.01))]
        fig = charts.line(pts, unit="percent")
        assert [t.name for t in fig.data if t.showlegend] == ["All (so far)", "Voluntary (so far)"]
        assert [t.textposition for t in fig.data if "so far" in (t.text or ())] == ["top center"]

    def test_a_range_of_one_period_is_one_category_from_zero(self):
        # A range inside this month: one point per line. As a date, plotly drew a time axis of a
        # few milliseconds and ranged the values a cent around the point.
        fig = charts.line([charts.Point("k", "2026-12-01", 2_386_538, partial=True)], unit="money", currency="USD")
        assert fig.layout.xaxis.type == "category" and fig.layout.yaxis.rangemode == "tozero"
        bars = charts.bars([charts.Point("k", "2026-12-01", 3, partial=True)], unit="count")
        assert bars.layout.xaxis.type == "category"
        two = charts.line([charts.Point("a", "2026-11-01", 1), charts.Point("b", "2026-12-01", 2)], unit="count")
        assert two.layout.xaxis.type is None and two.layout.yaxis.rangemode is None

    def test_unfinished_buckets(self):
        from datetime import UTC, date, datetime

        from dashboard.analytics_ui import unfinished
        from dashboard.metrics_data import Question

        q = Question(db="x", start=date(2026, 1, 1), end_exclusive=date(2026, 11, 28), granularity="month",
                     currency="USD", tier=None, interval=None, money_filter=None, country=None,
                     now_minute=datetime(2026, 11, 27, 15, 0, tzinfo=UTC),
                     settings=(("business_timezone", "Europe/Paris"),))
        assert unfinished(date(2026, 11, 1), q) and not unfinished(date(2026, 10, 1), q)
        assert unfinished(date(2026, 11, 27), q, "day") and not unfinished(date(2026, 11, 26), q, "day")


class TestHeldFigures:
    """A figure kept between reruns is only ever the one drawn from equal arguments of the same types."""

    def test_equal_arguments_give_the_figure_drawn_before(self):
        from dashboard import render_cache

        pts = [charts.Point("k1", "premium", 1_999), charts.Point("k2", "platinum", 5)]
        first = render_cache.figure(charts.bars, pts, unit="money", currency="EUR", title="Revenue by tier")
        again = render_cache.figure(charts.bars, list(pts), unit="money", currency="EUR", title="Revenue by tier")
        assert again is first
        assert first.to_dict() == charts.bars(pts, unit="money", currency="EUR", title="Revenue by tier").to_dict()

    def test_other_numbers_types_or_settings_draw_afresh(self):
        from decimal import Decimal

        from dashboard import render_cache

        def drawn(value, **kw):
            return render_cache.figure(charts.line, [charts.Point("k", "2026-01-01", value)], unit="percent", **kw)

        base = drawn(Decimal("0.5"))
        assert drawn(Decimal("0.25")) is not base
        assert drawn(0.5) is not base  # a float is not a Decimal: its hover text may differ
        assert drawn(Decimal("0.5"), title="Churn") is not base
        assert [c[1] for c in drawn(Decimal("0.25")).data[0].customdata] == ["25.0%"]

    def test_arguments_that_are_not_plain_data_draw_every_time(self):
        from dashboard import render_cache

        class Loose:  # not a frozen dataclass: it could change after being keyed
            pass

        def draw(_loose):
            return charts.bars([charts.Point("k", "x", 1)], unit="count")

        assert render_cache.figure(draw, Loose()) is not render_cache.figure(draw, Loose())


class TestMargins:
    def test_any_label_from_the_data_draws_and_gets_room(self):
        """Labels come from data (tier names, countries, codes): one shaped like a date that is not
        one, markup, entities and long words still give a figure, with margins at least as wide as
        THEME's and a left margin that grows with the longest category label."""
        labels = ["2026-13-45", "<b>Gold</b> & co", "2026-11-30", "an-unusually-long-tier-name-from-stripe"]
        fig = charts.bars([charts.Point(f"k{i}", label, 100 * i) for i, label in enumerate(labels)],
                          unit="money", currency="EUR", horizontal=True)
        short = charts.bars([charts.Point("k", "x", 100)], unit="money", currency="EUR", horizontal=True)
        margin = fig.layout.margin
        assert margin.l > short.layout.margin.l >= charts.THEME["margin"]["l"]
        assert margin.b >= charts.THEME["margin"]["b"] and margin.r >= charts.THEME["margin"]["r"]
        # The same labels along the bottom (periods are dates there: these are not all dates).
        upright = charts.bars([charts.Point(f"k{i}", label, 100 * i) for i, label in enumerate(labels)],
                              unit="count")
        assert upright.layout.margin.b >= charts.THEME["margin"]["b"]


class TestSentToTheBrowser:
    """What ``st.plotly_chart`` sends: the figure as plotly.io writes it (its JSON)."""

    @staticmethod
    def sent(fig):
        import json

        import plotly.io as pio

        return json.loads(pio.to_json(fig, validate=False))

    def test_no_template_and_a_revision_that_follows_the_data(self):
        def draw(value):
            return charts.line([charts.Point("k1", "2026-01-01", 0.031), charts.Point("k2", "2026-02-01", value)],
                               unit="percent", title="Churn")

        same, again, other = self.sent(draw(0.02)), self.sent(draw(0.02)), self.sent(draw(0.025))
        assert "template" not in same["layout"]
        assert same["layout"]["datarevision"] == again["layout"]["datarevision"]
        assert same["layout"]["datarevision"] != other["layout"]["datarevision"]

    def test_every_kind_of_chart_is_finished(self):
        figs = [charts.waterfall(1_200, {"new": 800}, 2_000, currency="JPY"),
                charts.bars([charts.Point("a", "premium", 5)], unit="count"),
                charts.heatmap(["2026-01"], ["M0"], {("2026-01", "M0"): 1.0})]
        for layout in (self.sent(f)["layout"] for f in figs):
            assert "template" not in layout and layout["datarevision"]
