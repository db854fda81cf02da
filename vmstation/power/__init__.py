"""Power: waking workers (Wake-on-LAN) and deciding when they may sleep.

    wol        magic packets: raw EtherType 0x0842 frames (scapy) or UDP broadcast
    jellyfin   Jellyfin's Sessions API: who is playing what
    idle       the one idle policy, its parsers, its state file and the scheduled check

Kept empty on purpose: ``idle`` and ``jellyfin`` run on masternode with only the
standard library, and ``wol`` imports scapy only when a raw frame is sent.
"""
