"""The SQLAlchemy construct calls pyembed.search from an ORM query."""

from __future__ import annotations

import psycopg
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from pyembed.integrations import orm
from pyembed.models import encoder, loading
from tests.helpers import run_worker


class Base(DeclarativeBase):
    pass


class Doc(Base):
    __tablename__ = "docs"
    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    body: Mapped[str]
    lang: Mapped[str]


def test_orm_query_joins_search_hits(db: psycopg.Connection, db_dsn: str) -> None:
    engine = sa.create_engine(db_dsn.replace("postgresql://", "postgresql+psycopg://"))
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all(
            [
                Doc(id=1, body="the cat sat on the mat", lang="en"),
                Doc(id=2, body="stock markets fell sharply", lang="en"),
                Doc(id=3, body="le chat est sur le tapis", lang="fr"),
            ]
        )
        session.commit()
    db.execute("SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'])")
    run_worker(db_dsn)
    query = encoder.Encoder(loading.load(db, 1)).encode(["a cat on a rug"])[0]

    hits = orm.search("docs", query, k=2, filter={"lang": "en"}, query_text="a cat on a rug")
    stmt = (
        sa.select(Doc, hits.c.similarity, hits.c.query_id)
        .join(hits, Doc.id == orm.key(hits, Doc.id))
        .order_by(hits.c.rank)
    )
    with Session(engine, expire_on_commit=False) as session:
        results = session.execute(stmt).all()
        session.commit()  # the search's log rows are part of the session's transaction
    assert [doc.id for doc, _, _ in results] == [1, 2]
    assert results[0][1] > results[1][1]
    query_id = results[0][2]
    assert db.execute(
        "SELECT query_text FROM pyembed.query_log WHERE id = %s", (query_id,)
    ).fetchone() == ("a cat on a rug",)
    engine.dispose()


class Note(Base):
    __tablename__ = "notes"
    slug: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    body: Mapped[str]


def test_the_readme_example_without_a_filter_and_with_a_text_key(
    db: psycopg.Connection, db_dsn: str
) -> None:
    engine = sa.create_engine(db_dsn.replace("postgresql://", "postgresql+psycopg://"))
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all(
            [
                Note(slug="cat", body="the cat sat on the mat"),
                Note(slug="stocks", body="stock markets fell sharply"),
            ]
        )
        session.commit()
    db.execute("SELECT pyembed.create_collection('notes', 'notes', ARRAY['body'])")
    run_worker(db_dsn)
    query = encoder.Encoder(loading.load(db, 1)).encode(["a cat on a rug"])[0]
    hits = orm.search("notes", query, k=2)
    stmt = sa.select(Note.slug).join(hits, Note.slug == orm.key(hits, Note.slug))
    with Session(engine) as session:
        assert session.scalars(stmt.order_by(hits.c.rank)).all() == ["cat", "stocks"]
    engine.dispose()
