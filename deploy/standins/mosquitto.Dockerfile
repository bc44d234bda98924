# A stand-in for eclipse-mosquitto, from Debian's Mosquitto, for machines with no image registry.
# Like the real image it has /mosquitto-no-auth.conf: anonymous clients on port 1883.
ARG BASE_IMAGE=strip-inspection-base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install --yes --no-install-recommends mosquitto \
    && rm -rf /var/lib/apt/lists/* \
    && printf 'listener 1883\nallow_anonymous true\n' > /mosquitto-no-auth.conf
USER mosquitto
EXPOSE 1883
CMD ["mosquitto", "-c", "/mosquitto-no-auth.conf"]
