# A stand-in for the postgres image, from Debian's PostgreSQL, for machines with no image registry
# (`make test-images` uses it). It honours what compose gives the real image: POSTGRES_USER,
# POSTGRES_PASSWORD, POSTGRES_DB, the data in /var/lib/postgresql/data, pg_isready.
ARG BASE_IMAGE=strip-inspection-base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install --yes --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && install --directory --owner=postgres --group=postgres --mode=700 /var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
USER postgres
EXPOSE 5432
ENTRYPOINT ["postgres-entrypoint"]
