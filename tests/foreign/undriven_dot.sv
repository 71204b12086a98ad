// Test fixture: examples/foreign/mx_block_dot.sv with its NaN flag left undriven (X in a 4-state simulator).
module undriven_dot (
  input  logic [7:0]         i_scale_a,
  input  logic [7:0]         i_scale_b,
  input  logic [7:0]         i_a [32],
  input  logic [7:0]         i_b [32],
  output logic signed [42:0] o_dp,
  output logic signed [9:0]  o_exp,
  output logic               o_nan
);
  mx_block_dot #(.K(32)) u_dot (.i_scale_a(i_scale_a), .i_scale_b(i_scale_b), .i_a(i_a), .i_b(i_b),
                                .o_dp(o_dp), .o_exp(o_exp), .o_nan());
endmodule
