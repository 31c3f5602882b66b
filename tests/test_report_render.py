"""Rendering: the HTML carries the computed figures, the CLI writes files, PDFs come out of Chromium
(when installed) or matplotlib, and a missing CJK font degrades to English plot labels."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from datetime import date
from pathlib import Path

import pytest

from liftwatch.cli import main
from liftwatch.edge_daemon.envelope import make_message, utc_iso
from liftwatch.edge_daemon.report import fonts
from liftwatch.edge_daemon.report.figures import Period, car_figures
from liftwatch.edge_daemon.report.html import render_car_html, render_fleet_html
from liftwatch.edge_daemon.report.pdf import find_chromium
import matplotlib.pyplot as plt

from liftwatch.edge_daemon.report.plots import Labels, to_svg, trips_figure
from support.report_synth import CarLog, clean_week, known_week, local_ts

WEEK = Period(date(2026, 11, 2), date(2026, 11, 8))
ARGS = ["--from", "2026-11-02", "--to", "2026-11-08"]


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    log = known_week("car-1")
    log.messages += clean_week("car-ok").messages
    return log.write_jsonl(tmp_path_factory.mktemp("report") / "upstream.jsonl")


@pytest.fixture(scope="module")
def car_html() -> str:
    return render_car_html(car_figures("car-1", known_week().messages, WEEK), generated_ts=0.0)


def _text(html: str) -> str:
    """Visible text outside the SVG plots."""
    return re.sub(r"<[^>]+>", " ", re.sub(r"<svg.*?</svg>", "", html, flags=re.S))


def test_summary_page_carries_the_figures(car_html: str) -> None:
    summary = car_html[car_html.index("id='summary'") : car_html.index("id='trends'")]
    text = _text(summary)
    assert "未达合同要求 / Contract targets missed" in text
    assert "96.78 %" in text  # availability
    assert "2 / 3 超时 late (1 无响应记录 no response recorded); max 50 min" in text
    assert "67 % (2/3)" in text  # 14:00-19:00 on a Wednesday is 4 working hours
    assert "0 超过 over; max 64.0 h" in text  # the leveling fault, open since 11-06 08:00
    assert "1 / 3 不足 short" in text
    assert "2 / 280 次超限 over" in text
    assert "350 / 35" in text
    assert text.count("✘ 未达标 / missed") == 3 and text.count("✔ 达标 / met") == 3
    assert "working calendar: working days Mon, Tue, Wed, Thu, Fri, 8 h a day" in text


def test_plots_and_records_follow_the_summary(car_html: str) -> None:
    for name in ("trips", "ride-quality", "doors", "leveling", "maintenance", "faults"):
        figure = re.search(rf"<figure id='plot-{name}'>(.*?)</figure>", car_html, flags=re.S)
        assert figure and figure.group(1).startswith("<svg") and "<path" in figure.group(1)
    assert car_html.index("id='summary'") < car_html.index("id='plot-trips'") < car_html.index("id='faults'")
    faults = _text(car_html[car_html.index("<table id='faults'>") :])
    assert "困人" in faults and "20 min" in faults and "50 min" in faults and "未恢复 open" in faults


def test_html_is_self_contained(car_html: str) -> None:
    assert "<script" not in car_html
    assert not re.search(r"""(src|href)=["']?https?:""", car_html)
    assert "@import" not in car_html


def test_fleet_html_ranks_by_risk() -> None:
    cars = [car_figures(c, (clean_week().messages + known_week().messages), WEEK) for c in ("car-ok", "car-1")]
    html = render_fleet_html(cars, generated_ts=0.0)
    assert re.findall(r"data-car='([^']+)'", html) == ["car-1", "car-ok"]
    text = _text(html)
    assert "高 high" in text and "低 low" in text
    assert "困人 entrapments +10" in text


def test_no_cjk_font_gives_english_plot_labels(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from matplotlib import font_manager

    fonts.cjk_font_family.cache_clear()
    monkeypatch.setattr(
        font_manager.fontManager, "ttflist", [f for f in font_manager.fontManager.ttflist if "CJK" not in f.name]
    )
    try:
        with caplog.at_level(logging.WARNING):
            lab = Labels()
        assert lab.family is None and lab("每日运行次数", "Trips per day") == "Trips per day"
        assert "fonts-noto-cjk" in caplog.text
        with plt.rc_context(lab.rc()):
            svg = to_svg(trips_figure(car_figures("car-1", known_week().messages, WEEK), lab))
        assert svg.startswith("<svg") and "<path" in svg
    finally:
        fonts.cjk_font_family.cache_clear()


def test_cjk_font_found_when_installed() -> None:
    if not any("CJK" in f.name for f in __import__("matplotlib").font_manager.fontManager.ttflist):
        pytest.skip("no CJK font installed (Debian fonts-noto-cjk)")
    assert Labels()("次", "trips") == "次 / trips"


def test_cli_unknown_car_and_missing_source(journal: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--car", "car-9", *ARGS, "--source", str(journal), "--out", str(tmp_path / "x.html")]) == 2
    err = capsys.readouterr().err
    assert "no car 'car-9'" in err and "car-1, car-ok" in err
    assert main(["report", "--car", "car-1", *ARGS, "--source", str(tmp_path / "nope.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["report", "--car", "car-1", "--from", "2026-13-01", "--to", "2026-11-08"])
    assert exc.value.code == 2


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_cli_report_of_a_car_with_only_the_pis_status_messages_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Car-less status messages are loaded with every car, but they are no fact of the car: a report
    of them alone would read all green ("Compliant") for a car that does not exist."""
    status = make_message("status", "estate-a", None, None, utc_iso(local_ts("2026-11-03", "12:00")), "pi:status:1",
                          {"boards": [], "drops": {}})
    journal = tmp_path / "upstream.jsonl"
    journal.write_text(json.dumps(status) + "\n", encoding="utf-8")
    out = tmp_path / "x.html"
    assert main(["report", "--car", "nosuchcar", *ARGS, "--source", str(journal), "--out", str(out)]) == 2
    assert "no car 'nosuchcar'" in _one_line(capsys.readouterr().err)
    assert not out.exists()


def test_cli_report_of_a_known_car_with_no_fact_in_the_period_is_refused(
    journal: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The loader keeps a day either side of the period; a car heard only then has nothing to report."""
    args = ["--from", "2026-11-10", "--to", "2026-11-10"]  # the day after the known week's last (11-08 + margin)
    assert main(["report", "--car", "car-1", *args, "--source", str(journal), "--out", str(tmp_path / "x.html")]) == 2
    assert "no messages of car 'car-1' between 2026-11-10 and 2026-11-10" in _one_line(capsys.readouterr().err)
    args = ["--from", "2026-11-09", "--to", "2026-11-09"]  # within the load margin of the week
    assert main(["report", "--car", "car-1", *args, "--source", str(journal), "--out", str(tmp_path / "x.html")]) == 2
    assert "no messages of car 'car-1'" in _one_line(capsys.readouterr().err)


def test_cli_report_from_a_text_file_is_an_error_not_an_empty_journal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.jsonl"
    notes.write_text("car-1 looked fine today\nno faults\n", encoding="utf-8")
    assert main(["report", "--car", "car-1", *ARGS, "--source", str(notes), "--out", str(tmp_path / "x.html")]) == 2
    assert "not an upstream journal" in _one_line(capsys.readouterr().err)
    assert main(["fleet-report", *ARGS, "--source", str(notes), "--out", str(tmp_path / "f.html")]) == 2
    assert "not an upstream journal" in _one_line(capsys.readouterr().err)


def test_cli_report_refuses_an_output_suffix_it_does_not_write(
    journal: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.docx"
    assert main(["report", "--car", "car-1", *ARGS, "--source", str(journal), "--out", str(out)]) == 2
    assert ".html or .pdf, not .docx" in _one_line(capsys.readouterr().err)
    assert not out.exists()
    html = tmp_path / "x.html"
    assert main(["report", "--car", "car-1", *ARGS, "--source", str(journal), "--out", str(html), "--format", "pdf"]) == 2
    assert "does not match" in _one_line(capsys.readouterr().err)


def test_cli_report_that_fails_keeps_the_previous_output(
    journal: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.html"
    out.write_text("last month's good report", encoding="utf-8")
    assert main(["report", "--car", "car-9", *ARGS, "--source", str(journal), "--out", str(out)]) == 2
    assert out.read_text(encoding="utf-8") == "last month's good report"
    assert main(["report", "--car", "car-1", *ARGS, "--source", str(journal), "--out", str(out)]) == 0
    assert "car-1" in out.read_text(encoding="utf-8")
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temporary file left beside it


def _pages(pdf: Path) -> int:
    """Page count from the PDF's page objects (no PDF library needed)."""
    return len(re.findall(rb"/Type\s*/Page[^s]", pdf.read_bytes()))


def test_find_chromium_honours_the_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFTWATCH_CHROMIUM", "")
    assert find_chromium() is None
    monkeypatch.setenv("LIFTWATCH_CHROMIUM", "/opt/chromium/chrome")
    assert find_chromium() == "/opt/chromium/chrome"


def test_pdf_falls_back_to_matplotlib_when_chromium_fails(
    journal: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A browser that exits without a PDF (here /bin/false) costs the layout, not the report."""
    monkeypatch.setenv("LIFTWATCH_CHROMIUM", shutil.which("false") or "/bin/false")
    out = tmp_path / "car-1.pdf"
    with caplog.at_level(logging.WARNING):
        assert main(["report", "--car", "car-1", *ARGS, "--source", str(journal), "--out", str(out)]) == 0
    assert "(matplotlib)" in capsys.readouterr().out
    assert "wrote no PDF" in caplog.text
    assert out.read_bytes().startswith(b"%PDF") and _pages(out) == 7  # summary + 6 plots


@pytest.mark.skipif(find_chromium() is None, reason="Debian chromium not installed")
def test_pdf_with_chromium(journal: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "car-1.pdf"
    assert (
        main(["report", "--car", "car-1", *ARGS, "--source", str(journal), "--format", "pdf", "--out", str(out)]) == 0
    )
    assert "(chromium)" in capsys.readouterr().out
    assert out.read_bytes().startswith(b"%PDF")
    assert _pages(out) == 4  # summary, trends, maintenance and faults, records
    if shutil.which("pdftotext"):
        page1 = " ".join(
            subprocess.run(
                ["pdftotext", "-f", "1", "-l", "1", str(out), "-"], capture_output=True, text=True, check=True
            ).stdout.split()
        )
        assert "Contract targets missed" in page1 and "96.78 %" in page1 and "一梯一档" in page1
        page4 = subprocess.run(
            ["pdftotext", "-f", "4", "-l", "4", str(out), "-"], capture_output=True, text=True, check=True
        ).stdout
        assert "Maintenance visits" in page4


@pytest.mark.skipif(find_chromium() is None, reason="Debian chromium not installed")
def test_fleet_report_pdf(journal: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fleet.pdf"
    assert main(["fleet-report", *ARGS, "--source", str(journal), "--out", str(out)]) == 0
    assert out.read_bytes().startswith(b"%PDF") and _pages(out) == 2
    printed = capsys.readouterr().out
    assert "car-1: Contract targets missed" in printed and "car-ok: Compliant" in printed
    # Each car's row of the ranking takes two lines (name and site), not four (verdict and points wrapping)
    page1 = subprocess.run(["pdftotext", "-f", "1", "-l", "1", "-layout", str(out), "-"], capture_output=True,
                           text=True, check=True).stdout.splitlines()
    first = next(i for i, line in enumerate(page1) if re.match(r"\s*1 car-1\b", line))
    second = next(i for i, line in enumerate(page1) if re.match(r"\s*2 car-ok\b", line))
    assert second - first == 2, "\n".join(page1[first:second])


def test_cli_takes_sources_and_targets_from_the_daemon_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--config: the journal in the daemon's state_dir, and its maintenance minimum (20 min here).

    Run as a fleet report: the same resolution of sources and targets, one plot instead of six."""
    state = tmp_path / "state"
    state.mkdir()
    known_week("car-1").write_jsonl(state / "upstream.jsonl")
    cfg = tmp_path / "liftwatch.toml"
    cfg.write_text(
        f'[daemon]\nsite = "estate-a"\nstate_dir = "{state}"\n[analytics]\nmaintenance_min_s = 1200.0\n'
        '[[boards]]\ncar = "car-1"\nlink = "serial"\nport = "/dev/ttyUSB0"\n',
        encoding="utf-8",
    )
    out = tmp_path / "fleet.html"
    assert main(["fleet-report", *ARGS, "--config", str(cfg), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    row = re.search(r"<tr class='car' data-car='car-1'>(.*?)</tr>", out.read_text(encoding="utf-8"), flags=re.S)
    assert row and "<td class='num'>0/3</td>" in row.group(1)  # the 20-minute visit now meets the minimum


def test_config_board_override_sets_one_cars_targets(tmp_path: Path) -> None:
    """[boards.analytics] overrides [analytics] for that car's report; the fleet report uses the site's."""
    from liftwatch.cli import build_parser
    from liftwatch.edge_daemon.report_cli import _resolve

    cfg = tmp_path / "liftwatch.toml"
    cfg.write_text(
        f'[daemon]\nsite = "estate-a"\nstate_dir = "{tmp_path}"\n[analytics]\nmaintenance_min_s = 1200.0\n'
        '[[boards]]\ncar = "car-1"\nlink = "serial"\nport = "/dev/ttyUSB0"\n'
        "[boards.analytics]\nmaintenance_min_s = 3000.0\nday_utc_offset_h = 9.0\n"
        '[boards.calendar]\nsat = ["09:00-12:00"]\n'
        '[[boards]]\ncar = "car-2"\nlink = "serial"\nport = "/dev/ttyUSB1"\n'
        '[calendar]\nrepair_max_days = "working"\n',
        encoding="utf-8",
    )
    journal = tmp_path / "upstream.jsonl"
    journal.touch()  # resolved, not read, here
    src = ["--source", str(journal)]
    parser = build_parser()
    _, period, targets, out, fmt = _resolve(
        parser.parse_args(["report", "--car", "car-1", *ARGS, "--config", str(cfg), *src]), "r"
    )
    assert (targets.maintenance_min_s, targets.utc_offset_h, period.utc_offset_h) == (3000.0, 9.0, 9.0)
    assert targets.calendar.week[5] == ((540, 720),) and targets.calendar.repair_max_days == "calendar"
    assert (out, fmt) == (Path("r-2026-11-02-2026-11-08.html"), "html")
    _, _, targets, _, _ = _resolve(
        parser.parse_args(["report", "--car", "car-2", *ARGS, "--config", str(cfg), *src]), "r"
    )
    assert targets.maintenance_min_s == 1200.0 and targets.calendar.repair_max_days == "working"
    _, _, targets, _, _ = _resolve(parser.parse_args(["fleet-report", *ARGS, "--config", str(cfg), *src]), "f")
    assert (targets.maintenance_min_s, targets.utc_offset_h) == (1200.0, 8.0)


def test_a_one_day_report_plots_hours_not_one_date_on_every_tick() -> None:
    """Every tick of a one-day period read "11-03" and trips per day was one bar filling the chart."""
    day = Period(date(2026, 11, 3), date(2026, 11, 3))
    log = CarLog("car-1")
    for hour, n in ((7, 5), (8, 9), (12, 2), (18, 7)):
        for i in range(n):
            log.trip(local_ts("2026-11-03", f"{hour:02d}:{5 * i:02d}"))
    f = car_figures("car-1", log.messages, day)
    lab = Labels()
    with plt.rc_context(lab.rc()):
        fig = trips_figure(f, lab)
    ax = fig.axes[0]
    assert "Trips per hour" in ax.get_title(loc="left")
    ticks = ax.xaxis.get_major_formatter().format_ticks(ax.get_xticks())
    assert ticks == ["00:00", "03:00", "06:00", "09:00", "12:00", "15:00", "18:00", "21:00", "00:00"]
    heights = [round(b.get_height()) for b in ax.patches]
    assert len(heights) == 24 and heights[7] == 5 and heights[8] == 9 and heights[18] == 7 and sum(heights) == 23
    html = render_car_html(f, generated_ts=0.0)
    assert "Trips per local hour" in html
    week = car_figures("car-1", log.messages, WEEK)  # a week still reads days
    with plt.rc_context(lab.rc()):
        ax = trips_figure(week, lab).axes[0]
    assert "Trips per day" in ax.get_title(loc="left")
    assert ax.xaxis.get_major_formatter().format_ticks(ax.get_xticks())[:2] == ["11-02", "11-03"]


def test_trips_without_ride_quality_say_why() -> None:
    """A one-floor trip never reaches the constant speed ISO 18738-1 judges; a trip whose VIB was lost
    has nothing to judge. The report says how many of each instead of a bare "—"."""
    log = CarLog("car-1")
    t0 = local_ts("2026-11-03", "09:00")
    for i in range(4):
        log.trip(t0 + 60 * i)
    for i in range(3):
        log.trip(t0 + 600 + 60 * i, z_a95=None, z_max=None, xy_a95=None)["floors"] = 1
    log.trip(t0 + 1200, z_a95=None, z_max=None, xy_a95=None)  # two floors, still no plateau
    for i in range(2):
        log.trip(t0 + 1800 + 60 * i)["ride_quality"] = None
    f = car_figures("car-1", log.messages, WEEK)
    assert f.rq_trips_judged == 4 and f.rq_unjudged == {"one_floor": 3, "short": 1, "no_vib": 2}
    text = _text(render_car_html(f, generated_ts=0.0))
    assert "0 / 4 次超限 over; 未评 not judged: 2 无振动数据 no vibration data, 3 单层运行 one-floor trip, " \
           "1 运行过短 too short to judge" in text
