"""Bad input fails with a DataError that names the file and the line or the mismatch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import fixture_dataset

from tools.data.fetch import fetch_dataset, load_dataset
from tools.data.loaders import (
    TableMapping,
    load_amazon,
    load_directory,
    load_grouplens,
    load_recbole,
    load_table,
    load_yelp,
)
from tools.data.schema import DataError

INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def recbole_error(folder: Path, inter: str | bytes, item: str | bytes | None = None) -> str:
    write(folder / "x.inter", inter)
    if item is not None:
        write(folder / "x.item", item)
    with pytest.raises(DataError) as caught:
        load_recbole(folder)
    return str(caught.value)


@pytest.mark.parametrize(
    ("inter", "expected"),
    [
        (INTER_HEADER + "1\t2\t3\t4\n1\t2\t3\t4\t5\n", ["x.inter", "line 3", "Expected 4 fields"]),
        (INTER_HEADER + "1\t2\t3\t4\t5\n1\t2\t3\t4\t5\n", ["x.inter", "line 2", "expected 4 fields"]),
        (INTER_HEADER + "1\t2\t3\t4\n1\t2\n", ["x.inter", "line 3", "'rating'", "missing or empty"]),
        (INTER_HEADER + "1\t2\t3\t4\n\n1\t2\t3\t4\n", ["x.inter", "line 3", "missing or empty"]),
        (INTER_HEADER + "1\t2\tfive\t4\n", ["x.inter", "line 2", "'five' is not a number"]),
        ("user_id:token\titem_id:token\trating:float\n1\t2\t3\n", ["x.inter", "missing column(s) timestamp"]),
        ("user_id\titem_id\trating\ttimestamp\n1\t2\t3\t4\n", ["x.inter", "line 1", "not a RecBole typed field"]),
        ("", ["x.inter", "file is empty"]),
        ("\n\n", ["x.inter", "file is empty"]),
    ],
)
def test_recbole_interactions(tmp_path: Path, inter: str, expected: list[str]) -> None:
    message = recbole_error(tmp_path, inter)
    for part in expected:
        assert part in message


def test_recbole_latin1_where_utf8_is_expected(tmp_path: Path) -> None:
    item = "item_id:token\tmovie_title:token_seq\n1\tMarmalade Lighthouse\n2\tPélican de Verre, Le\n".encode("latin-1")
    message = recbole_error(tmp_path, INTER_HEADER + "1\t1\t3\t4\n", item)
    assert "x.item, line 3" in message and "not valid utf-8" in message and "latin-1" in message


def test_recbole_item_field_count(tmp_path: Path) -> None:
    message = recbole_error(tmp_path, INTER_HEADER + "1\t1\t3\t4\n", "item_id:token\tmovie_title:token_seq\n1\tMarmalade\tLighthouse\n")
    assert "x.item, line 2: expected 2" in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"u\.item: no such file"):
        load_grouplens(write(tmp_path / "u.data", "1\t2\t3\t4\n").parent)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"u.data": "1\t2\t3\t4\n1\t2\t3\n"}, ["u.data", "line 2", "'timestamp' is missing"]),
        ({"u.data": "1\t2\t3\t4\t9\n"}, ["u.data", "line 1", "expected 4 fields"]),
        ({"u.data": "1\t2\t3\tyesterday\n"}, ["u.data", "line 1", "'yesterday' is not a number"]),
        ({"u.data": "1\t2\t3\t4\n", "u.item": "1|Marmalade Lighthouse (1995)|01-Jan-1995\n"}, ["u.item", "line 1", "expected 24"]),
        (
            {"u.data": "1\t2\t3\t4\n", "u.item": "1|Marmalade Lighthouse (1995)|01-Jan-1995||url|" + "|".join("2" * 19) + "\n"},
            ["u.item", "line 1", "genre flags must be 0 or 1"],
        ),
        ({"ratings.dat": "1::2::3::4\n1::2:3::4\n"}, ["ratings.dat", "line 2", "'timestamp' is missing"]),
        ({"ratings.dat": "1::2::3::4\n1::2::3:4\n"}, ["ratings.dat", "line 2", "'3:4' is not a number"]),
        (
            {"ratings.dat": "1::2::3::4\n", "movies.dat": "1::Marmalade Lighthouse (1995)\n"},
            ["movies.dat", "line 1", "expected 3"],
        ),
    ],
)
def test_grouplens(tmp_path: Path, files: dict[str, str], expected: list[str]) -> None:
    # valid side files, then the broken one on top
    fixture = fixture_dataset("grouplens-100k" if "u.data" in files else "grouplens-1m")
    for path in fixture.iterdir():
        write(tmp_path / path.name, path.read_bytes())
    for name, text in files.items():
        write(tmp_path / name, text)
    with pytest.raises(DataError) as caught:
        load_grouplens(tmp_path)
    for part in expected:
        assert part in str(caught.value)


def review(**fields: object) -> str:
    record = {"reviewerID": "A1", "asin": "B1", "overall": 5.0, "unixReviewTime": 1112140800} | fields
    return json.dumps({k: v for k, v in record.items() if v is not None}) + "\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (review() + "{not json\n", "line 2: not valid JSON"),
        (review() + "[1, 2]\n", "line 2: expected a JSON object, found list"),
        (review(asin=None), "line 1: required field 'asin' is missing"),
        (review(overall="5"), "line 1: field 'overall' should be a number, found '5'"),
        (review(unixReviewTime=True), "line 1: field 'unixReviewTime' should be a number"),
        ("", "file is empty"),
    ],
)
def test_amazon_reviews(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(DataError, match=expected):
        load_amazon(write(tmp_path / "Books.json", text))


def test_json_lines_must_be_utf8(tmp_path: Path) -> None:
    text = review().encode() + '{"reviewerID": "Zoë", "asin": "B", "overall": 1, "unixReviewTime": 1}\n'.encode("latin-1")
    with pytest.raises(DataError, match=r"Books\.json, line 2: byte 0xeb is not valid utf-8"):
        load_amazon(write(tmp_path / "Books.json", text))


def test_amazon_meta_without_asin(tmp_path: Path) -> None:
    meta = write(tmp_path / "meta_Books.json", json.dumps({"title": "No id"}) + "\n")
    with pytest.raises(DataError, match=r"meta_Books.json, line 1: required field 'asin'"):
        load_amazon(write(tmp_path / "Books.json", review()), meta)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"date": "07/07/2018"}, "line 2: date '07/07/2018' is not 'YYYY-MM-DD HH:MM:SS'"),
        ({"date": 1530999999}, "line 2: field 'date' should be"),
        ({"business_id": ""}, "line 2: required field 'business_id'"),
        ({"stars": "4"}, "line 2: field 'stars' should be a number"),
    ],
)
def test_yelp_reviews(tmp_path: Path, fields: dict[str, object], expected: str) -> None:
    good = {"user_id": "u", "business_id": "b", "stars": 4.0, "date": "2018-07-07 22:09:11"}
    text = json.dumps(good) + "\n" + json.dumps(good | fields) + "\n"
    with pytest.raises(DataError, match=expected):
        load_yelp(write(tmp_path / "review.json", text))


def test_yelp_business_without_name(tmp_path: Path) -> None:
    reviews = write(
        tmp_path / "review.json",
        json.dumps({"user_id": "u", "business_id": "b", "stars": 4, "date": "2018-07-07 22:09:11"}),
    )
    businesses = write(tmp_path / "business.json", json.dumps({"business_id": "b"}) + "\n")
    with pytest.raises(DataError, match=r"business\.json, line 1: required field 'name'"):
        load_yelp(reviews, businesses)


MAPPING = TableMapping(user="user", item="item", timestamp="ts", rating="stars")


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("t.csv", "user,item,time\na,b,1\n", "t.csv: missing column(s) ts, stars; the table has user, item, time"),
        (
            "t.csv",
            "user,item,ts,stars\na,b,1,4\na,c,soon,4\n",
            "t.csv, line 3: timestamp 'soon' is neither a unix time nor a date",
        ),
        (
            "t.csv",
            "user,item,ts,stars\na,b,2021-03-01,4\na,c,1614556800,4\n",
            "t.csv, line 3: timestamp '1614556800' is a number among dates",
        ),
        ("t.csv", "user,item,ts,stars\na,b,1,good\n", "t.csv, line 2: rating 'good' is not a number"),
        ("t.csv", "user,item,ts,stars\na,,1,4\n", "t.csv, line 2: column 'item' is empty"),
        ("t.csv", "user,item,ts,stars\n", "t.csv: the table has no rows"),
        ("t.csv", "user,item,ts,stars\na,b,1,4\na,b,1,4,5,6\n", "t.csv: malformed CSV: Expected 4 fields in line 3"),
        ("t.xlsx", "user,item,ts,stars\n", "unknown table format '.xlsx'"),
    ],
)
def test_table(tmp_path: Path, name: str, text: str, expected: str) -> None:
    with pytest.raises(DataError) as caught:
        load_table(write(tmp_path / name, text), MAPPING)
    assert expected in str(caught.value)


def test_table_mapping_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="timestmap"):
        TableMapping.model_validate({"user": "u", "item": "i", "timestamp": "t", "timestmap": "t"})


def test_unknown_dataset_names(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown dataset 'ml-20m': known names are ml-100k, ml-1m"):
        fetch_dataset("ml-20m", tmp_path)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="unknown dataset 'netflix': known names are ml-100k, ml-1m"):
        load_dataset("netflix", tmp_path)


def test_unknown_layout(tmp_path: Path) -> None:
    write(tmp_path / "notes.txt", "hello")
    with pytest.raises(DataError, match=r"no known dataset layout.*it holds notes\.txt"):
        load_directory(tmp_path)
