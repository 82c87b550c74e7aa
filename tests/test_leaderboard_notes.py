"""What a leaderboard tells its reader beside the numbers: dataset, split sizes, per-class test
counts (with a warning where a recall rests on a handful of images) and which rows are tied
with the top. Hand-made rows: no training."""

from fer_bench.results import columns as lb
from fer_bench.results.report import dataset_html
from fer_bench.results.rows import LeaderboardRow

COUNTS = {"angry": 49, "disgust": 6, "fear": 51, "happy": 88, "sad": 60, "surprise": 42,
          "neutral": 61}


def row(rank: int, tied: bool | None = None, p: float | None = None, **extra) -> LeaderboardRow:
    fields = {"rank": rank, "eval_dataset": "synfer:n=4000", "dataset": "synfer:n=4000",
              "test_counts": dict(COUNTS),
              "split_sizes": {"train": 3200, "val": 400, "test": 400},
              "tied_with_top": tied, "p_vs_top": p, **extra}
    return LeaderboardRow(**fields)


def test_dataset_note_names_splits_counts_and_the_few_image_class():
    notes = " ".join(lb.dataset_notes([row(1), row(2)]))
    assert "Dataset synfer:n=4000: train 3,200, val 400, test 400 images" in notes
    assert "disgust 6" in notes and "happy 88" in notes
    assert "disgust recall rests on 6 test images (one image = 16.7 points)" in notes
    assert "fear recall rests" not in notes  # 51 images is not a handful


def test_without_split_sizes_the_test_size_comes_from_the_counts():
    r = row(1, split_sizes=None)
    assert "Dataset synfer:n=4000: test 357 images" in lb.dataset_notes([r])[0]
    assert lb.dataset_notes([row(1, test_counts=None)]) == []


def test_recall_headers_carry_their_test_count():
    rows = [row(1), row(2)]
    assert lb.header("recall:disgust", rows) == "disgust (n=6)"
    assert lb.header("fear_disgust", rows) == "fear/disgust"
    other = row(3, test_counts={**COUNTS, "disgust": 7})
    assert lb.header("recall:disgust", [*rows, other]) == "disgust"  # not one number: none


def test_tied_note_lists_tied_ranks_or_says_none_are():
    rows = [row(1), row(2, True, 0.4), row(3, False, 0.01), row(4, True, 0.2)]
    assert lb.tied_note(rows) == ["Tied with the top (†): #2, #4; significantly below it: "
                                  "1 row."]
    apart = [row(1), row(2, False, 0.01), row(3, False, 0.001)]
    assert lb.tied_note(apart) == ["No row is tied with the top: #1 is significantly ahead "
                                   "of all 2 tested rows."]
    assert lb.tied_note([row(1), row(2)]) == []  # no paired test ran


def test_report_section_shows_the_counts_and_the_warning():
    page = dataset_html([row(1), row(2)])
    assert "train 3,200, val 400, test 400 images" in page
    assert '<th class="fd">disgust</th>' in page and "<td>6</td>" in page
    assert "<b>disgust</b> recall rests on 6 test images" in page
