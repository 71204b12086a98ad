// Test fixture: examples/foreign/mx_block_dot.sv behind a two-stage valid/ready pipeline (each stage
// takes a new block when it is empty or its output is taken), active-high reset. With DROP_ON_STALL defined
// the output stage ignores m_ready (a handshake bug the regression must report).
module mx_block_dot_stream (
  input  logic               clk,
  input  logic               rst,
  input  logic               s_valid,
  output logic               s_ready,
  input  logic [7:0]         s_scale_a,
  input  logic [7:0]         s_scale_b,
  input  logic [7:0]         s_a [32],
  input  logic [7:0]         s_b [32],
  output logic               m_valid,
  input  logic               m_ready,
  output logic signed [42:0] m_sum,
  output logic signed [9:0]  m_exp,
  output logic               m_nan
);
  logic signed [42:0] dp;
  logic signed [9:0]  ex;
  logic               nn;
  mx_block_dot #(.K(32)) u_dot (.i_scale_a(s_scale_a), .i_scale_b(s_scale_b), .i_a(s_a), .i_b(s_b),
                                .o_dp(dp), .o_exp(ex), .o_nan(nn));
  logic               v1, v2;
  logic signed [42:0] sum1, sum2;
  logic signed [9:0]  exp1, exp2;
  logic               nan1, nan2;
  logic               take1, take2;
`ifdef DROP_ON_STALL
  assign take2   = 1'b1;  // broken on purpose: the output stage is overwritten while stalled
`else
  assign take2   = !v2 || m_ready;
`endif
  assign take1   = !v1 || (take2);
  assign s_ready = take1;
  always_ff @(posedge clk) begin
    if (rst) begin
      v1 <= 1'b0;
      v2 <= 1'b0;
    end else begin
      if (take1) v1 <= s_valid;
      if (take2) v2 <= v1;
    end
    if (take1) begin sum1 <= dp; exp1 <= ex; nan1 <= nn; end
    if (take2) begin sum2 <= sum1; exp2 <= exp1; nan2 <= nan1; end
  end
  assign m_valid = v2;
  assign m_sum   = sum2;
  assign m_exp   = exp2;
  assign m_nan   = nan2;
endmodule
