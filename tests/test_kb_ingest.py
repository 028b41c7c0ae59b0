"""Every input format, and every way a file can be bad: read correctly, or skipped with a reason."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from kb_support import minimal_pdf

from assistant.kb.ingest import discover, read_file
from assistant.kb.records import SkipFile, decode_bytes

CHUNK = {"chunk_chars": 200, "overlap_chars": 40}


def read(path: Path):
    return read_file(path, path.name, **CHUNK)


def test_csv_with_alternates_and_ids(tmp_path: Path) -> None:
    p = tmp_path / "faq.csv"
    with p.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "question", "answer", "alternates"])
        w.writerow(["wifi", "访客Wi-Fi密码是多少", "连接HB-Guest，密码在前台。", "客人怎么上网|WiFi密码"])
        w.writerow(["", "Where is the canteen?", "On the 2nd floor.", ""])
        w.writerow(["x", "", "an answer without a question", ""])
    result = read(p)
    assert result.kind == "faq"
    first, second = result.records
    assert (first.id, first.text, first.answer) == ("wifi", "访客Wi-Fi密码是多少", "连接HB-Guest，密码在前台。")
    assert first.alternates == ["客人怎么上网", "WiFi密码"]
    assert first.keys == ["访客Wi-Fi密码是多少", "客人怎么上网", "WiFi密码"]
    assert first.language == "zh" and second.language == "en"
    assert second.id == "faq-2"  # generated from the file name and row number
    assert any("row 3" in w for w in result.warnings)


def test_tsv_and_chinese_headers(tmp_path: Path) -> None:
    p = tmp_path / "faq.tsv"
    p.write_text("问题\t答案\t相似问题\n怎么报销\t在易报销提交。\t报销流程\n", encoding="utf-8")
    (record,) = read(p).records
    assert (record.text, record.answer, record.alternates) == ("怎么报销", "在易报销提交。", ["报销流程"])


def test_jsonl_with_list_alternates(tmp_path: Path) -> None:
    p = tmp_path / "faq.jsonl"
    rows = [{"id": "a", "question": "How do I print?", "answer": "Tap your badge.", "alternates": ["printer", "copies"]}]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    (record,) = read(p).records
    assert record.alternates == ["printer", "copies"] and record.id == "a"


def test_jsonl_with_a_bad_line_keeps_its_good_lines(tmp_path: Path) -> None:
    # issue 23, item 8: one bad line skipped the whole file
    p = tmp_path / "faq.jsonl"
    good = [{"id": f"q{i}", "question": f"question {i}?", "answer": f"answer {i}."} for i in range(3)]
    lines = [json.dumps(good[0]), '{"id": "broken", "question": "cut here', json.dumps(good[1]), "[1, 2]", json.dumps(good[2])]
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = read(p)
    assert [r.id for r in result.records] == ["q0", "q1", "q2"]
    assert result.warnings[:2] == ["line 2 is not JSON (Unterminated string starting at), left out",
                                   "line 4 is not a JSON object, left out"]
    p.write_text('{"question": "nothing good\n', encoding="utf-8")
    with pytest.raises(SkipFile, match="line 1 is not JSON"):
        read(p)


def test_xlsx(tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Question", "Answer", "ID", "Alternates"])
    sheet.append(["停车怎么收费", "访客免费2小时。", "park", "停车费\n车位在哪"])
    sheet.append([None, None, None, None])
    p = tmp_path / "faq.xlsx"
    book.save(p)
    (record,) = read(p).records
    assert (record.id, record.alternates) == ("park", ["停车费", "车位在哪"])


def test_table_without_answer_column_is_skipped(tmp_path: Path) -> None:
    p = tmp_path / "people.csv"
    p.write_text("name,phone\nAnn,123\n", encoding="utf-8")
    with pytest.raises(SkipFile, match="no question or answer column"):
        read(p)


def test_markdown_sections_and_title(tmp_path: Path) -> None:
    p = tmp_path / "guide.md"
    p.write_text(
        "# Visitor Guide\n\nIntro text.\n\n## Arriving\n\nUse the **east gate**.\n\n### Parking\n\n"
        "Park on B2.\n\n| Floor | Use |\n|---|---|\n| 2F | Canteen |\n",
        encoding="utf-8",
    )
    result = read(p)
    assert result.kind == "document"
    by_section = {r.section: r for r in result.records}
    assert set(by_section) == {"", "Arriving", "Arriving > Parking"}
    assert all(r.title == "Visitor Guide" for r in result.records)
    assert "Use the east gate." in by_section["Arriving"].text  # emphasis markers removed
    assert "2F | Canteen" in by_section["Arriving > Parking"].text
    assert by_section["Arriving > Parking"].keys[0].startswith("Arriving > Parking: ")


def test_html_headings_lists_tables(tmp_path: Path) -> None:
    p = tmp_path / "page.html"
    p.write_text(
        "<html><head><title>Help</title><script>var x = 'no';</script></head><body>"
        "<h2>Wi-Fi</h2><p>Join HB-Guest.</p><ul><li>Password at the desk</li></ul>"
        "<h2>Floors</h2><table><tr><td>3F</td><td>IT desk</td></tr></table></body></html>",
        encoding="utf-8",
    )
    records = read(p).records
    assert records[0].title == "Help"
    assert {r.section for r in records} == {"Wi-Fi", "Floors"}
    text = " ".join(r.text for r in records)
    assert "Password at the desk" in text and "3F | IT desk" in text and "var x" not in text


def test_pdf_pages(tmp_path: Path) -> None:
    p = tmp_path / "policy.pdf"
    p.write_bytes(minimal_pdf(["Hotels are capped at 600 yuan per night.", "The per diem is 150 yuan."]))
    records = read(p).records
    assert records and all(r.page == 1 for r in records)
    assert "600 yuan" in " ".join(r.text for r in records)


def test_corrupt_pdf_is_skipped(tmp_path: Path) -> None:
    p = tmp_path / "broken.pdf"
    p.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage without xref or trailer")
    with pytest.raises(SkipFile, match="PDF"):
        read(p)


def test_encrypted_pdf_is_skipped(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    plain = tmp_path / "plain.pdf"
    plain.write_bytes(minimal_pdf(["secret"]))
    writer = PdfWriter()
    writer.add_page(PdfReader(plain).pages[0])
    writer.encrypt(user_password="s3cret", owner_password="owner")
    p = tmp_path / "locked.pdf"
    with p.open("wb") as f:
        writer.write(f)
    with pytest.raises(SkipFile, match="encrypted"):
        read(p)


def test_docx_headings_and_tables(tmp_path: Path) -> None:
    docx = pytest.importorskip("docx")
    document = docx.Document()
    document.add_heading("员工手册", level=0)
    document.add_heading("考勤", level=1)
    document.add_paragraph("核心工作时间是10:00到16:00。")
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "年假"
    table.rows[0].cells[1].text = "10天"
    p = tmp_path / "handbook.docx"
    document.save(p)
    records = read(p).records
    assert records[0].title == "员工手册"
    assert records[0].section == "考勤"
    assert "核心工作时间" in " ".join(r.text for r in records)
    assert "年假 | 10天" in " ".join(r.text for r in records)


def test_empty_docx_is_skipped(tmp_path: Path) -> None:
    docx = pytest.importorskip("docx")
    p = tmp_path / "empty.docx"
    docx.Document().save(p)
    with pytest.raises(SkipFile, match="empty"):
        read(p)


def test_not_a_docx_is_skipped(tmp_path: Path) -> None:
    p = tmp_path / "fake.docx"
    p.write_bytes(b"this is not a zip file")
    with pytest.raises(SkipFile, match="DOCX"):
        read(p)


def test_gbk_text_is_detected_not_guessed(tmp_path: Path) -> None:
    text = "出差住宿标准：北京、上海每晚不超过600元，其他城市每晚不超过450元。\n\n补贴每天150元，包含伙食和市内交通。"
    p = tmp_path / "travel.txt"
    p.write_bytes(text.encode("gbk"))
    with pytest.raises(UnicodeDecodeError):
        p.read_bytes().decode("utf-8")
    records = read(p).records
    assert "".join(r.text for r in records).replace("\n", "") == text.replace("\n", "")


def test_utf8_bom_and_empty_files(tmp_path: Path) -> None:
    assert decode_bytes("你好".encode("utf-8-sig")) == "你好"
    with pytest.raises(SkipFile, match="empty"):
        decode_bytes(b"  \n")


def test_undecodable_bytes_are_skipped(tmp_path: Path) -> None:
    p = tmp_path / "binary.txt"
    p.write_bytes(bytes([0x00, 0xFF, 0xFE, 0x81, 0x00, 0x9D]) * 200 + bytes(range(256)))
    with pytest.raises(SkipFile):
        read(p)


def test_unsupported_type_and_discovery(tmp_path: Path) -> None:
    (tmp_path / "kb" / "sub").mkdir(parents=True)
    (tmp_path / "kb" / "a.md").write_text("# A\n\ntext", encoding="utf-8")
    (tmp_path / "kb" / "sub" / "b.csv").write_text("question,answer\nq,a\n", encoding="utf-8")
    (tmp_path / "kb" / ".hidden.md").write_text("x", encoding="utf-8")
    (tmp_path / "kb" / "photo.png").write_bytes(b"\x89PNG")
    files, missing = discover([tmp_path / "kb", tmp_path / "nope"])
    assert [f.name for f in files] == ["a.md", "photo.png", "b.csv"]
    assert missing == [(tmp_path / "nope", "no such file or folder")]
    with pytest.raises(SkipFile, match="unsupported"):
        read(tmp_path / "kb" / "photo.png")


def test_a_line_break_inside_chinese_text_adds_no_space(tmp_path: Path) -> None:
    p = tmp_path / "handbook.md"
    p.write_text("# 手册\n\n## 信息安全\n\n公司电脑默认禁用U盘，\n确有需要的须经审批。\nSee the\nIT desk.\n", encoding="utf-8")
    text = " ".join(r.text for r in read(p).records)
    assert "禁用U盘，确有需要的" in text and "See the IT desk." in text
