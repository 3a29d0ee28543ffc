"""cocotb-under-Verilator regression infrastructure: build cache, driver/monitor/scoreboard,
and the benches (one module per block). See docs/verilog.md."""
