"""MovieLens facts shared by the RecBole and GroupLens routes, so that both give the same
titles, years, genres and user features."""

from __future__ import annotations

import re

# u.item's 19 genre flags, in column order (ML-100K README)
GENRES_100K = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)

# ML-1M stores age groups and occupations as codes (ML-1M README); labels read better in a prompt
AGE_GROUPS_1M = {
    "1": "Under 18",
    "18": "18-24",
    "25": "25-34",
    "35": "35-44",
    "45": "45-49",
    "50": "50-55",
    "56": "56+",
}
OCCUPATIONS_1M = (
    "other or not specified",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
)

_TITLE_YEAR = re.compile(r"^(?P<title>.*\S)\s+\((?P<year>\d{4})\)\s*$")


def split_title_year(title: str) -> tuple[str, int | None]:
    """'Toy Story (1995)' -> ('Toy Story', 1995); a title without a trailing year is kept."""
    match = _TITLE_YEAR.match(title)
    if match is None:
        return title.strip(), None
    return match["title"], int(match["year"])


def ml1m_user_labels(features: dict[str, str]) -> dict[str, str]:
    """Replace ML-1M's age and occupation codes by their README labels."""
    labelled = dict(features)
    if "age" in labelled:
        labelled["age"] = AGE_GROUPS_1M.get(_code(labelled["age"]), labelled["age"])
    if "occupation" in labelled and _code(labelled["occupation"]).isdigit():
        index = int(_code(labelled["occupation"]))
        if index < len(OCCUPATIONS_1M):
            labelled["occupation"] = OCCUPATIONS_1M[index]
    return labelled


def _code(value: str) -> str:
    # RecBole types these columns as float, so a code may read '25.0'
    return value.strip().removesuffix(".0")
