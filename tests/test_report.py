"""Suite summaries and tables from results the test writes."""

import numpy as np

from dataprune.report import markdown_table, suite_cells, write_suite_summary
from dataprune.results import write_results


def _rows(accs):
    rows = []
    for (method, ratio), values in accs.items():
        for seed, v in enumerate(values):
            rows.append({"method": method, "ratio": ratio, "seed": seed, "test_acc": v, "cost_fraction": 0.5,
                         "train_seconds": 1.0, "kept_mislabelled": float("nan")})
    return rows


def test_suite_summary_counts_the_targets(tmp_path):
    a = {("recommended", 0.5): [0.90, 0.92], ("random", 0.5): [0.88, 0.88], ("kcenter", 0.5): [0.95, 0.95],
         ("recommended", 0.9): [0.70, 0.70], ("random", 0.9): [0.71, 0.71], ("kcenter", 0.9): [0.69, 0.69]}
    b = {("recommended", 0.5): [0.80, 0.80], ("random", 0.5): [0.70, 0.70]}
    for name, accs in (("s1", a), ("s2", b)):
        (tmp_path / name).mkdir()
        write_results(str(tmp_path / name / "results.csv"), _rows(accs), ["recommended", "random", "kcenter"])
    cells = suite_cells(str(tmp_path), ["s1", "s2"])
    assert [(c["setting"], c["ratio"]) for c in cells] == [("s1", 0.5), ("s1", 0.9), ("s2", 0.5)]
    assert np.allclose([c["diff"] for c in cells], [0.03, -0.01, 0.10])
    assert [c["within_best"] for c in cells] == [False, False, True]     # kcenter leads at 0.5, random at 0.9
    text = write_suite_summary(str(tmp_path), ["s1", "s2"])
    assert "Cells: 3. Mean difference to random: +4.00 points; lowest -1.00 (s1, ratio 0.9); cells below " \
           "random - 0.5: 1; best or within 0.5 of the best: 1 of 3 (33%)." in text
    assert "| s1 | +3.0 / -1.0 | 0.5: kcenter +4.0; 0.9: random +1.0 |" in text
    assert (tmp_path / "summary.md").read_text() == text


def test_markdown_table_order_is_the_grid_order_not_completion_order():
    rows = _rows({("b", 0.5): [0.5], ("a", 0.5): [0.6], ("random", 0.5): [0.4]})
    table = markdown_table(rows[::-1], ["random", "b", "a"])
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:5]] == ["random", "b", "a"]


def test_report_orders_suspects_by_evidence():
    # the grid of removed suspects starts with the lowest label margin (the most evident wrong labels)
    from dataprune.report import _most_evident

    margin = np.array([0.3, -0.8, 0.1, -0.2, 0.05])
    idx = np.array([0, 2, 3, 4])
    assert _most_evident(idx, margin).tolist() == [3, 4, 2, 0]
    assert _most_evident(idx, None).tolist() == idx.tolist()


def test_markdown_table_shows_a_spread_only_with_two_seeds_or_more():
    one = markdown_table(_rows({("a", 0.5): [0.5], ("random", 0.5): [0.4]}))
    two = markdown_table(_rows({("a", 0.5): [0.5, 0.7], ("random", 0.5): [0.4, 0.4]}))
    assert "| a | 50.0 | 0.50 |" in one and "±" not in one
    assert "| a | 60.0 ± 10.0 | 0.50 |" in two
