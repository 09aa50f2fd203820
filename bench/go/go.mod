module sluice.local/bench/go

go 1.19
