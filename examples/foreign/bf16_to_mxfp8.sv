// BF16 -> MXFP8 (E4M3) block converter, fixed latency of two clock cycles, no handshake, no reset.
//
// The conventions of this converter (stated in bf16_to_mxfp8.json as an nxfp-hw policy):
//  - o_shared_exp is the shared exponent floor(log2(amax)) + 127, i.e. the E8M0 scale code plus 8
//    (the scale is reported relative to the element's largest exponent, emax(E4M3) = 8);
//  - the scale code is clamped from below at MIN_SCALE (blocks of tiny values lose them);
//  - elements round to nearest with ties AWAY from zero (add half an LSB, truncate), and saturate
//    at +-448;
//  - a NaN or Inf input gives the E4M3 NaN code of its sign (S.1111.111) for that element only;
//    the scale comes from the finite inputs.
// A new block may be presented every cycle; its result appears two rising edges later.
module bf16_to_mxfp8 #(
  parameter int K = 32,
  parameter int MIN_SCALE = 0
) (
  input  logic        clk,
  input  logic [15:0] i_bf16 [K],
  output logic [7:0]  o_shared_exp,
  output logic [7:0]  o_elem [K]
);
  // ---- stage 1: register the block and its largest finite exponent field ----
  logic [15:0] x_q [K];
  logic [7:0]  emax_q;
  logic [7:0]  emax_d;

  always_comb begin
    emax_d = 8'd0;
    for (int j = 0; j < K; j++)
      if (i_bf16[j][14:7] != 8'hFF && i_bf16[j][14:7] > emax_d)
        emax_d = i_bf16[j][14:7];
  end

  always_ff @(posedge clk) begin
    emax_q <= emax_d;
    for (int j = 0; j < K; j++)
      x_q[j] <= i_bf16[j];
  end

  // ---- stage 2: scale code, element conversion, output registers ----
  // scale code s = max(emax - 8, MIN_SCALE); element value / 2^(s-127) has its leading bit at 2^(e - s)
  function automatic logic [7:0] convert(input logic [15:0] x, input int s);
    logic       sign;
    logic [7:0] field_e;
    logic [7:0] sig;     // 1.MMMMMMM (normal) or a normalised subnormal significand
    int         e;       // exponent of sig's leading bit, unbiased bf16 exponent
    int         u;       // exponent of the leading bit relative to the scale
    int         sh;
    logic [8:0] r;
    int         mag;
    sign    = x[15];
    field_e = x[14:7];
    if (field_e == 8'hFF) return {sign, 7'h7F};            // NaN or Inf -> NaN code of its sign
    if (field_e == 8'd0 && x[6:0] == 7'd0) return {sign, 7'd0};
    if (field_e != 8'd0) begin
      sig = {1'b1, x[6:0]};
      e   = int'(field_e);
    end else begin                                          // bf16 subnormal: normalise
      sig = {1'b0, x[6:0]};
      e   = 1;
      while (!sig[7]) begin
        sig = sig << 1;
        e   = e - 1;
      end
    end
    u = e - s;
    if (u >= -6) begin                                      // E4M3 normal range: keep 4 significant bits
      r   = ({1'b0, sig} + 9'd8) >> 4;                      // ties away: add half, truncate (8..16)
      mag = ((u + 7) << 3) + int'(r) - 8;
    end else begin                                          // E4M3 subnormal: units of 2^-9
      sh  = -2 - u;
      r   = (sh > 9) ? 9'd0 : ({1'b0, sig} + (9'd1 << (sh - 1))) >> sh;
      mag = int'(r);
    end
    if (mag > 126) mag = 126;                               // saturate at 448
    return {sign, mag[6:0]};
  endfunction

  int scale_code;
  always_comb begin
    scale_code = int'(emax_q) - 8;
    if (scale_code < MIN_SCALE) scale_code = MIN_SCALE;
  end

  always_ff @(posedge clk) begin
    o_shared_exp <= 8'(scale_code + 8);
    for (int j = 0; j < K; j++)
      o_elem[j] <= convert(x_q[j], scale_code);
  end
endmodule
