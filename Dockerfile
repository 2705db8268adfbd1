# The SBC (`sbc` and `sbcctl`) in a small Debian 12 image.
#   docker build -t sbc .
#   docker build -t sbc:dpdk --build-arg FEATURES=dpdk .   # DPDK backend too
# Configuration: /etc/sbc/sbc.toml (the loopback example; mount your own, e.g.
# deploy/sbc.toml) and SBC_<SECTION>_<KEY> variables (README "Deployment").
ARG FEATURES=""

FROM rust:1-bookworm AS build
ARG FEATURES
RUN case "$FEATURES" in *dpdk*) \
      apt-get update \
      && apt-get install -y --no-install-recommends libdpdk-dev libclang-dev pkg-config \
      && rm -rf /var/lib/apt/lists/* ;; \
    esac
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p sbc-controlplane --bins ${FEATURES:+--features "$FEATURES"} \
    && install -D -m 0755 -t /out target/release/sbc target/release/sbcctl

FROM debian:bookworm-slim
ARG FEATURES
# ca-certificates only, plus with FEATURES=dpdk the DPDK 22.11 libraries the
# binary links and the drivers EAL loads at start (mempool ring, af_packet and
# common NICs' poll-mode drivers: add yours). SIP 5060/5080 and the relay ports
# are above 1024, so the non-root user needs no capability to bind them.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
       $(case "$FEATURES" in *dpdk*) echo librte-eal23 librte-ethdev23 librte-mbuf23 \
         librte-mempool23 librte-mempool-ring23 librte-net-af-packet23 librte-net-i40e23 \
         librte-net-ice23 librte-net-ixgbe23 librte-net-mlx5-23 librte-net-virtio23 \
         librte-net-vmxnet3-23 ;; esac) \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /var/lib/sbc --create-home --shell /usr/sbin/nologin sbc
COPY --from=build /out/sbc /out/sbcctl /usr/local/bin/
COPY config/sbc.toml /etc/sbc/sbc.toml
# The default SQLite database (sqlite://sbc.db) is created here.
WORKDIR /var/lib/sbc
USER sbc
# SIP (carriers, gateways), REST API, Prometheus metrics, RTP/RTCP relay
# ports ([media] port_min..port_max, the end exclusive).
EXPOSE 5060/udp 5080/udp 8080 9494 10000-59999/udp
ENTRYPOINT ["sbc", "run", "--config", "/etc/sbc/sbc.toml"]
