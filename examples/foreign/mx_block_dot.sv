// Exact MXFP8 (E4M3 x E4M3) block dot product, purely combinational.
//
// Written the way a hand-made datapath usually is: unpacked-array element ports, a signed
// fixed-point result without the scales applied, and the scale exponent reported beside it.
//   o_dp  = sum_j a_j * b_j, two's complement, LSB = 2^-18 (the product of two E4M3 subnormal LSBs)
//   o_exp = (scale_a - 127) + (scale_b - 127): the block result is o_dp * 2^-18 * 2^o_exp
//   o_nan = a NaN element (S.1111.111) or a NaN scale (0xFF) in either block
module mx_block_dot #(
  parameter int K = 32,
  parameter int SUM_W = 43   // o_dp width: 43 bits hold any sum exactly; wider ports are sign-extended
) (
  input  logic [7:0]         i_scale_a,
  input  logic [7:0]         i_scale_b,
  input  logic [7:0]         i_a [K],
  input  logic [7:0]         i_b [K],
  output logic signed [SUM_W-1:0] o_dp,
  output logic signed [9:0]  o_exp,
  output logic               o_nan
);
  // E4M3 magnitude as significand << shift, in units of 2^-9:
  // subnormal (E = 0): 0.MMM * 2^-6 = MMM * 2^-9; normal: 1.MMM * 2^(E-7) = (8 + MMM) * 2^(E-1) * 2^-9
  function automatic logic [3:0] e4m3_sig(input logic [7:0] c);
    e4m3_sig = {c[6:3] != 4'd0, c[2:0]};
  endfunction

  function automatic logic [3:0] e4m3_shift(input logic [7:0] c);
    e4m3_shift = (c[6:3] == 4'd0) ? 4'd0 : c[6:3] - 4'd1;
  endfunction

  logic signed [42:0] acc;
  logic               nan;
  logic [7:0]         prod_sig;
  logic [4:0]         prod_shift;
  logic [41:0]        prod;

  always_comb begin
    acc = '0;
    nan = (i_scale_a == 8'hFF) || (i_scale_b == 8'hFF);
    for (int j = 0; j < K; j++) begin
      prod_sig   = {4'd0, e4m3_sig(i_a[j])} * {4'd0, e4m3_sig(i_b[j])};
      prod_shift = {1'b0, e4m3_shift(i_a[j])} + {1'b0, e4m3_shift(i_b[j])};
      prod       = {34'd0, prod_sig} << prod_shift;
      if (i_a[j][7] ^ i_b[j][7])
        acc = acc - $signed({1'b0, prod});
      else
        acc = acc + $signed({1'b0, prod});
      if (i_a[j][6:0] == 7'h7F || i_b[j][6:0] == 7'h7F)
        nan = 1'b1;
    end
  end

  assign o_dp  = SUM_W'(acc);
  assign o_exp = $signed({2'b00, i_scale_a}) + $signed({2'b00, i_scale_b}) - 10'sd254;
  assign o_nan = nan;
endmodule
