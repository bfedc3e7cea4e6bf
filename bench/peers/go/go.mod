module fanout-bench/go-peer

go 1.19
