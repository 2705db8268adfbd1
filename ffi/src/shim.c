/* Exported wrappers of DPDK's static inline functions and macros. */
#include "wrapper.h"

int sbc_rte_errno(void) { return rte_errno; }

uint16_t sbc_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t sbc_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_tx_burst(port, queue, pkts, n);
}

struct rte_mbuf *sbc_pktmbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }

void sbc_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }

unsigned char *sbc_pktmbuf_mtod(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, unsigned char *); }

uint16_t sbc_pktmbuf_data_len(const struct rte_mbuf *m) { return rte_pktmbuf_data_len(m); }

unsigned char *sbc_pktmbuf_append(struct rte_mbuf *m, uint16_t len)
{
	return (unsigned char *)rte_pktmbuf_append(m, len);
}

unsigned sbc_lcore_id(void) { return rte_lcore_id(); }

uint64_t sbc_rdtsc(void) { return rte_rdtsc(); }
