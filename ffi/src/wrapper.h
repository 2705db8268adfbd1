/* What the bindings cover: the EAL, ethdev, mbufs, mempools, rings, lcores. */
#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>
#include <rte_cycles.h>

/* The shim (shim.c): DPDK's static inline functions and macros, which have
 * no symbol for Rust to link against. */
int sbc_rte_errno(void);
uint16_t sbc_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t sbc_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
struct rte_mbuf *sbc_pktmbuf_alloc(struct rte_mempool *mp);
void sbc_pktmbuf_free(struct rte_mbuf *m);
unsigned char *sbc_pktmbuf_mtod(struct rte_mbuf *m);
uint16_t sbc_pktmbuf_data_len(const struct rte_mbuf *m);
unsigned char *sbc_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
unsigned sbc_lcore_id(void);
uint64_t sbc_rdtsc(void);
