"""The lab's toolkit: what the end-to-end tests (lab/tests/) and the lab benchmarks
(perf/cps_lab.py, perf/rtp_lab.py) share. Python 3.11 standard library only; root (ip netns).

One module a concern, lowest first:
    paths        where the lab's files are, the run directories under lab-out/
    addresses    the lab's addresses and ports
    proc         processes we start (registry, stop, /proc accounting) and the scripts' main()
    netns        the namespaces up and down (lab/netns.sh), cleanup on exit and signals
    api          the SBC's REST API (curl inside ns sbc) and replacing its provisioning
    sip          SIP messages in sipp traces (SipMsg, Sdp) and one-shot sends via lab/sipsend.py
    sipp         sipp UAC and UAS runs and their statistics
    pcap         tcpdump captures and reading them (frames, UDP, RTP, private addresses)
    sbc          the SBC process: its config, start, restart, stop
For the tests only:
    registry     the @lab_test decorator and the order tests run in
    ctx          Ctx (what a test gets), check, TestFailure
    provisioning the base provisioning, Provisioned (a test's own), gateway and tenant rows
    calls        call runs through the SBC and what they produced
    media        calls with audio, captured on both SBC interfaces, and the checks on them
    dns          an authoritative DNS server (dnslib) in a namespace, its zone rewritten while
                 it runs, and the resolver files /etc/netns/NS/{resolv.conf,hosts}; run as a
                 script inside the namespace, it is the server
    srtp         libsrtp2 through ctypes (SRTP/SRTCP sessions per SDES key), a=crypto lines, and
                 an RTP/RTCP end point (SRTP or plain); run as a script inside a namespace, it is
                 that end point (kit/tls.py's UA loads it by path for its own media)
Run as a script inside a namespace (stdlib only, no kit imports):
    uapeer       a small SIP UA with RTP for flows sipp cannot play (a media port move, binary
                 multipart bodies); prints what it sent and received as JSON. The tests import
                 its SIP message and multipart parsers to read captures.
"""
