//! Built-in prices for common Bedrock models (USD per 1,000 tokens, us-east-1, on demand, as
//! published on the Amazon Bedrock pricing page; compiled [`PRICES_AS_OF`], check before
//! budgeting). Batch inference is priced at half the on-demand rate (Bedrock's batch discount)
//! unless a price says otherwise. Users add or override prices in `[pricing]` of `beacon.toml`;
//! an unknown model gets no cost rather than a wrong one.

/// When the built-in table was compiled.
pub const PRICES_AS_OF: &str = "2026-11-25";

use crate::config::Price;

const PRICES: &[(&str, f64, f64)] = &[
    ("anthropic.claude-3-haiku-20240307-v1:0", 0.000_25, 0.001_25),
    ("anthropic.claude-3-5-haiku-20241022-v1:0", 0.000_8, 0.004),
    ("anthropic.claude-3-sonnet-20240229-v1:0", 0.003, 0.015),
    ("anthropic.claude-3-5-sonnet-20240620-v1:0", 0.003, 0.015),
    ("anthropic.claude-3-5-sonnet-20241022-v2:0", 0.003, 0.015),
    ("anthropic.claude-3-7-sonnet-20250219-v1:0", 0.003, 0.015),
    ("anthropic.claude-3-opus-20240229-v1:0", 0.015, 0.075),
    ("amazon.nova-micro-v1:0", 0.000_035, 0.000_14),
    ("amazon.nova-lite-v1:0", 0.000_06, 0.000_24),
    ("amazon.nova-pro-v1:0", 0.000_8, 0.003_2),
];

/// The built-in price of `model`. Cross-region inference profile ids (`us.`, `eu.`, `apac.`,
/// `global.` prefixes) are priced as their base model.
pub fn builtin_price(model: &str) -> Option<Price> {
    if model == "offline" {
        return Some(Price::on_demand(0.0, 0.0));
    }
    let base =
        ["us.", "eu.", "apac.", "global.", "jp.", "au."].iter().find_map(|p| model.strip_prefix(p)).unwrap_or(model);
    PRICES
        .iter()
        .find(|(id, _, _)| *id == base)
        .map(|&(_, input_per_1k, output_per_1k)| Price::on_demand(input_per_1k, output_per_1k))
}

/// Cost in USD of the given token counts at `price`.
pub fn cost_usd(price: Price, input_tokens: u64, output_tokens: u64) -> f64 {
    (input_tokens as f64 / 1000.0) * price.input_per_1k + (output_tokens as f64 / 1000.0) * price.output_per_1k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inference_profiles_price_as_their_base_model() {
        let p = builtin_price("us.anthropic.claude-3-haiku-20240307-v1:0").unwrap();
        assert_eq!(p.input_per_1k, 0.000_25);
        assert!(builtin_price("someone.unknown-model").is_none());
        assert_eq!(builtin_price("offline").unwrap().output_per_1k, 0.0);
    }

    #[test]
    fn cost_is_per_thousand_tokens() {
        let p = Price::on_demand(0.003, 0.015);
        let c = cost_usd(p, 2000, 1000);
        assert!((c - 0.021).abs() < 1e-12, "{c}");
        // Batch: half, unless given.
        assert!((cost_usd(p.batch(), 2000, 1000) - 0.0105).abs() < 1e-12);
        let given = Price { batch_input_per_1k: Some(0.001), batch_output_per_1k: Some(0.01), ..p };
        assert!((cost_usd(given.batch(), 2000, 1000) - 0.012).abs() < 1e-12);
    }
}
