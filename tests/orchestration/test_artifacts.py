"""The pure parts of the Prefect artifacts (the artifacts themselves are checked on a real server in
tests/integration/test_prefect_flow.py)."""


from tasks.lib.outputs import Metrics, PromotionDecision, write_record
from orchestration.artifacts import epoch_description, epoch_progress, report_markdown
from tasks.common.paths import DatasetPaths


def test_epoch_progress_is_a_percentage_of_the_epoch_limit():
    assert [epoch_progress(done, 3) for done in (1, 2, 3)] == [33.3, 66.7, 100.0]


def test_epoch_description_names_the_epoch_and_its_metrics():
    text = epoch_description(2, 15, {"accuracy": 0.81234, "val_loss": 0.5})

    assert text == "epoch 2 of at most 15: accuracy 0.8123, val_loss 0.5000"


def test_report_markdown_links_the_page_and_gives_the_decision(tmp_path):
    paths = DatasetPaths(tmp_path, "mnist-sample")
    paths.reports_dir.mkdir(parents=True)
    write_record(paths.promotion_file, PromotionDecision("mnist-sample", False, "rejected: ...", 0.91, 0.93, -0.02,
                                                         {}, [], None))
    metrics = Metrics(test_accuracy=0.91234, test_loss=0.3, stop_epoch=4, test_images=10)

    text = report_markdown(paths, metrics)

    assert f"[Open the run report]({paths.report_file.as_uri()})" in text
    assert "Test accuracy 0.9123" in text and "promotion: champion kept" in text
