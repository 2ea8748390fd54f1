"""Each loader on a small file written in its source's public format."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from conftest import fixture_dataset

from tools.data.loaders import (
    TableMapping,
    load_amazon,
    load_directory,
    load_grouplens,
    load_recbole,
    load_table,
    load_yelp,
)
from tools.data.schema import INTERACTION_COLUMNS, Item


def by_id(items: list[Item]) -> dict[str, Item]:
    return {item.id: item for item in items}


def rows(frame: pd.DataFrame) -> list[tuple[str, str, float, int]]:
    return list(zip(frame["user_id"], frame["item_id"], frame["rating"].tolist(), frame["timestamp"].tolist(), strict=True))


def test_grouplens_100k() -> None:
    raw = load_grouplens(fixture_dataset("grouplens-100k"))
    assert raw.name == "ml-100k"
    items = by_id(raw.items)
    assert [i.id for i in raw.items] == ["1", "2", "3", "4", "5", "267"]
    assert items["1"] == Item(id="1", title="Marmalade Lighthouse", year=1995, attributes={"genre": ("Animation", "Children's", "Comedy")})
    assert (items["3"].title, items["3"].year) == ("Pélican de Verre, Le", 1995)  # latin-1 in u.item
    assert items["3"].attributes["genre"] == ("Drama", "Musical")
    assert items["4"].attributes["genre"] == ("Film-Noir", "Sci-Fi")
    # no trailing year in the title: the title stays whole and the release date gives the year
    assert (items["5"].title, items["5"].year) == (
        "Little Comet IV: The Long Way to the Meadow (1995) (V)",
        1995,
    )
    assert (items["267"].title, items["267"].year, items["267"].attributes) == (
        "unknown",
        None,
        {"genre": ("unknown",)},
    )
    frame = raw.interactions
    assert list(frame.columns) == list(INTERACTION_COLUMNS)
    assert frame["order"].tolist() == list(range(11))
    assert rows(frame)[:2] == [("412", "1", 3.0, 884512730), ("95", "2", 3.0, 889034460)]
    # the zip code stays text: its leading zero survives
    assert raw.user_features["95"] == {"age": "31", "gender": "F", "occupation": "executive", "zip": "02139"}


def test_grouplens_1m() -> None:
    raw = load_grouplens(fixture_dataset("grouplens-1m"))
    assert raw.name == "ml-1m"
    items = by_id(raw.items)
    assert items["3"] == Item(id="3", title="Xenomorph³", year=1992, attributes={"genre": ("Action", "Horror", "Sci-Fi", "Thriller")})
    assert items["4"].title == "Seven Brass Umbrellas, The"
    assert rows(raw.interactions)[0] == ("1", "1", 5.0, 975600120)
    assert len(raw.interactions) == 7
    # codes replaced by the ML-1M README's labels
    assert raw.user_features["1"] == {"gender": "F", "age": "Under 18", "occupation": "K-12 student", "zip": "53703"}
    assert raw.user_features["2"]["occupation"] == "self-employed"


def test_recbole_ml1m_style_crlf_utf8() -> None:
    raw = load_recbole(fixture_dataset("recbole-1m"))
    assert raw.name == "ml-1m"
    items = by_id(raw.items)
    # `genre:token` still holds several space-separated genres
    assert items["Marmalade Lighthouse (1995)"] == Item(
        id="Marmalade Lighthouse (1995)",
        title="Marmalade Lighthouse",
        year=1995,
        attributes={"genre": ("Animation", "Children's", "Comedy")},
    )
    assert items["Xenomorph³ (1992)"].title == "Xenomorph³"
    assert rows(raw.interactions)[:2] == [
        ("1m_1", "Marmalade Lighthouse (1995)", 5.0, 975600120),
        ("1m_1", "Xenomorph³ (1992)", 3.0, 975600120),
    ]
    assert raw.user_features["1m_2"] == {"age": "56+", "gender": "M", "occupation": "self-employed", "zip": "97214"}


def test_recbole_ml100k_style_quirks() -> None:
    raw = load_recbole(fixture_dataset("recbole-100k"))
    items = by_id(raw.items)
    assert items["1"].attributes == {"genre": ("Animation", "Children's", "Comedy")}  # `class` is renamed
    # RecBole's copy left this year in the title and wrote 'V' as the year
    assert (items["1412"].title, items["1412"].year) == ("Little Comet IV: The Long Way to the Meadow", 1995)
    assert (items["267"].title, items["267"].year) == ("unkonwn", None)
    assert raw.user_features["412"] == {"age": "44", "gender": "M", "occupation": "librarian", "zip": "60612"}
    assert raw.user_features["95"]["zip"] == "02139"


def test_recbole_without_rating_or_side_files(tmp_path: Path) -> None:
    (tmp_path / "clicks.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\nu\ta\t10.0\nu\tb\t11\n")
    raw = load_recbole(tmp_path)
    assert raw.name == "clicks" and raw.items == [] and raw.user_features == {}
    assert rows(raw.interactions) == [("u", "a", 1.0, 10), ("u", "b", 1.0, 11)]


def test_amazon() -> None:
    folder = fixture_dataset("amazon-book")
    raw = load_amazon(folder / "Books.json", folder / "meta_Books.json", name="amazon-book")
    items = by_id(raw.items)
    assert list(items) == ["0990000011", "0990000028", "0990000036", "0990000099"]  # duplicate record dropped
    owl = items["0990000011"]
    assert owl.title == "The Owl, the Kettle and the Lantern"
    assert owl.year == 1967
    assert owl.attributes == {
        "category": ("Books", "Children's Books", "Literature & Fiction"),
        "brand": ("Mirela Tansy",),
        "price": ("$4.99",),
    }
    assert owl.description == "A bedtime tale & more for children."
    # page markup in the price field is not a price
    assert items["0990000028"].attributes == {
        "category": ("Books", "Literature & Fiction", "Historical Fiction"),
        "brand": ("Corwin Aldous",),
    }
    assert items["0990000028"].year == 2000
    assert items["0990000036"].title == "Salt Roads North"
    assert items["0990000036"].attributes["price"] == ("$10.00 - $15.99",)
    assert rows(raw.interactions)[0] == ("A1", "0990000011", 5.0, 1136073600)
    assert len(raw.interactions) == 6  # a review of a product without metadata still counts


def test_amazon_gzip(tmp_path: Path) -> None:
    source = fixture_dataset("amazon-book") / "Books.json"
    (tmp_path / "Books.json.gz").write_bytes(gzip.compress(source.read_bytes()))
    raw = load_amazon(tmp_path / "Books.json.gz")
    assert len(raw.interactions) == 6 and raw.items == []


def test_yelp() -> None:
    raw = load_yelp(fixture_dataset("yelp") / "review.json", fixture_dataset("yelp") / "business.json")
    items = by_id(raw.items)
    assert items["b1"] == Item(
        id="b1",
        title="Larkspur Crumb & Kettle",
        attributes={
            "category": ("Restaurants", "Food", "Bubble Tea", "Coffee & Tea", "Bakeries"),
            "city": ("Philadelphia",),
            "state": ("PA",),
            "stars": ("4.0",),
            "price": ("$",),
        },
    )
    assert "price" not in items["b2"].attributes
    assert items["b3"].attributes == {"category": (), "city": ("Tucson",), "state": ("AZ",), "stars": ("3.5",)}
    expected = int(datetime(2019, 3, 14, 18, 25, 40, tzinfo=UTC).timestamp())
    assert rows(raw.interactions)[0] == ("u1", "b1", 4.0, expected)
    assert rows(raw.interactions)[1][2] == 2.0


def test_table_csv_with_item_table() -> None:
    mapping = TableMapping(
        user="user",
        item="item",
        timestamp="when",
        rating="score",
        title="name",
        year="released",
        attributes={"tag": "tags"},
    )
    folder = fixture_dataset("table")
    raw = load_table(folder / "interactions.csv", mapping, name="shop", items=folder / "items.csv")
    assert raw.name == "shop"
    march_1 = int(datetime(2021, 3, 1, 10, tzinfo=UTC).timestamp())
    assert rows(raw.interactions)[0] == ("alice", "i1", 4.5, march_1)
    assert rows(raw.interactions)[3][3] == int(datetime(2021, 3, 4, tzinfo=UTC).timestamp())
    items = by_id(raw.items)
    assert list(items) == ["i1", "i2", "i3", "i4"]
    assert items["i3"] == Item(id="i3", title="Third Item", year=2010, attributes={"tag": ("c", "a")})


def test_table_items_from_rows_and_parquet(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "u": ["x", "x", "y"],
            "i": [10, 11, 10],
            "t": pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-03"], utc=True),
            "genres": ["Drama,Comedy", None, "Drama,Comedy"],
        }
    )
    frame.to_parquet(tmp_path / "log.parquet")
    mapping = TableMapping(user="u", item="i", timestamp="t", attributes={"genre": "genres"}, list_separator=",")
    raw = load_table(tmp_path / "log.parquet", mapping)
    assert raw.name == "log"
    assert rows(raw.interactions)[0] == ("x", "10", 1.0, int(datetime(2020, 1, 1, tzinfo=UTC).timestamp()))
    assert raw.items == [
        Item(id="10", title="10", attributes={"genre": ("Drama", "Comedy")}),
        Item(id="11", title="11", attributes={"genre": ()}),
    ]


@pytest.mark.parametrize(
    ("folder", "name", "ratings"),
    [
        ("grouplens-100k", "ml-100k", 11),
        ("grouplens-1m", "ml-1m", 7),
        ("recbole-1m", "ml-1m", 4),
        ("amazon-book", "amazon-book", 6),
        ("yelp", "yelp", 4),
    ],
)
def test_load_directory_detects_layout(folder: str, name: str, ratings: int) -> None:
    raw = load_directory(fixture_dataset(folder))
    assert (raw.name, len(raw.interactions)) == (name, ratings)
    assert raw.items


def test_table_tsv_gz(tmp_path: Path) -> None:
    (tmp_path / "log.tsv.gz").write_bytes(gzip.compress(b"u\ti\tt\nx\t1\t100\nx\t2\t99\n"))
    raw = load_table(tmp_path / "log.tsv.gz", TableMapping(user="u", item="i", timestamp="t"), name="log")
    assert rows(raw.interactions) == [("x", "1", 1.0, 100), ("x", "2", 1.0, 99)]
    assert [item.title for item in raw.items] == ["1", "2"]
