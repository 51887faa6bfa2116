//! `beacon deploy --provisioned-units N`: Bedrock Provisioned Throughput for the stack's model.
//! CloudFormation has no resource type that buys it, so it is created through the Bedrock API
//! (`CreateProvisionedModelThroughput`), after saying what it costs, and the stack's
//! `ProvisionedModelArn` parameter takes the result once it is in service.

use std::time::{Duration, Instant};

use aws_sdk_bedrock::types::{CommitmentDuration, ProvisionedModelStatus};

use super::DeployError;
use super::stack::api_error;

/// Hours a month, as AWS bills monthly commitments.
const HOURS_PER_MONTH: f64 = 730.0;

/// A commitment term of Provisioned Throughput.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commitment {
    /// Billed by the hour until deleted.
    None,
    OneMonth,
    SixMonths,
}

impl std::str::FromStr for Commitment {
    type Err = String;
    fn from_str(s: &str) -> Result<Commitment, String> {
        match s {
            "none" => Ok(Commitment::None),
            "1month" | "one-month" => Ok(Commitment::OneMonth),
            "6months" | "six-months" => Ok(Commitment::SixMonths),
            other => Err(format!("unknown commitment {other:?}: use none, 1month or 6months")),
        }
    }
}

impl Commitment {
    fn months(self) -> Option<f64> {
        match self {
            Commitment::None => None,
            Commitment::OneMonth => Some(1.0),
            Commitment::SixMonths => Some(6.0),
        }
    }

    fn api(self) -> Option<CommitmentDuration> {
        match self {
            Commitment::None => None,
            Commitment::OneMonth => Some(CommitmentDuration::OneMonth),
            Commitment::SixMonths => Some(CommitmentDuration::SixMonths),
        }
    }
}

/// What to provision.
pub struct ProvisionRequest {
    pub model_id: String,
    pub units: u32,
    pub commitment: Commitment,
    /// The name of the provisioned model (`<stack>-beacon`).
    pub name: String,
    /// USD per model unit per hour, when the user knows it (BEACON carries no table: the price
    /// depends on the model, the region and the term).
    pub unit_price_per_hour: Option<f64>,
}

impl ProvisionRequest {
    /// What it costs, said before anything is bought.
    pub fn cost_statement(&self) -> String {
        let term = match self.commitment {
            Commitment::None => "no commitment: billed every hour until you delete it".to_string(),
            Commitment::OneMonth => "a one-month commitment: billed for the whole month".to_string(),
            Commitment::SixMonths => "a six-month commitment: billed for all six months".to_string(),
        };
        let what = format!("Provisioned Throughput: {} model unit(s) of {}, {term}.", self.units, self.model_id);
        match self.unit_price_per_hour {
            Some(price) => {
                let hourly = price * f64::from(self.units);
                let month = hourly * HOURS_PER_MONTH;
                let total = self
                    .commitment
                    .months()
                    .map(|months| format!(", ${:.2} for the term", month * months))
                    .unwrap_or_default();
                format!(
                    "{what} At ${price:.2} per unit-hour: ${hourly:.2} an hour, ${month:.2} a month{total}, on top of the stack's other costs."
                )
            }
            None => format!(
                "{what} BEACON does not know the price of a model unit of {}: see \"Provisioned Throughput\" on \
                 https://aws.amazon.com/bedrock/pricing/ and pass --provisioned-unit-price USD to see the total. \
                 It is charged per model unit per hour, used or not.",
                self.model_id
            ),
        }
    }

    /// Creates the provisioned model in `region` (or at `endpoint`) and waits until it is in
    /// service; returns its ARN.
    pub async fn create(
        &self,
        region: Option<&str>,
        endpoint: Option<&str>,
        poll: Duration,
        timeout: Duration,
        progress: &dyn Fn(&str),
    ) -> Result<String, DeployError> {
        let client = aws_sdk_bedrock::Client::new(&beacon_aws::sdk_config(region, endpoint).await);
        let units = i32::try_from(self.units).map_err(|_| DeployError::Usage("too many model units".into()))?;
        let created = client
            .create_provisioned_model_throughput()
            .model_id(&self.model_id)
            .model_units(units)
            .provisioned_model_name(&self.name)
            .set_commitment_duration(self.commitment.api())
            // A retried deploy repeats the same request, not a second purchase.
            .client_request_token(format!("{}-{}-{units}", self.name, self.model_id.len()))
            .send()
            .await
            .map_err(|e| api_error("CreateProvisionedModelThroughput", e))?;
        let arn = created.provisioned_model_arn().to_string();
        progress(&format!("provisioned model {arn} created; waiting until it is in service"));
        let started = Instant::now();
        loop {
            let got = client
                .get_provisioned_model_throughput()
                .provisioned_model_id(&arn)
                .send()
                .await
                .map_err(|e| api_error("GetProvisionedModelThroughput", e))?;
            match got.status() {
                ProvisionedModelStatus::InService => return Ok(arn),
                ProvisionedModelStatus::Failed => {
                    return Err(DeployError::Stack(format!(
                        "provisioned model {arn} failed: {}",
                        got.failure_message().unwrap_or("no reason given")
                    )));
                }
                status if started.elapsed() >= timeout => {
                    return Err(DeployError::Stack(format!(
                        "provisioned model {arn} is still {} after {} minutes; deploy again with \
                         --parameter ProvisionedModelArn={arn} once it is InService",
                        status.as_str(),
                        timeout.as_secs() / 60
                    )));
                }
                _ => tokio::time::sleep(poll).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(commitment: Commitment, price: Option<f64>) -> ProvisionRequest {
        ProvisionRequest {
            model_id: "m".into(),
            units: 2,
            commitment,
            name: "s-beacon".into(),
            unit_price_per_hour: price,
        }
    }

    #[test]
    fn the_cost_is_said_with_the_term_and_the_total_when_the_price_is_known() {
        let month = request(Commitment::OneMonth, Some(20.0)).cost_statement();
        assert!(month.contains("$40.00 an hour") && month.contains("$29200.00 a month"), "{month}");
        assert!(month.contains("$29200.00 for the term"), "{month}");
        let six = request(Commitment::SixMonths, Some(20.0)).cost_statement();
        assert!(six.contains("$175200.00 for the term"), "{six}");
        let hourly = request(Commitment::None, Some(20.0)).cost_statement();
        assert!(hourly.contains("until you delete it") && !hourly.contains("for the term"), "{hourly}");
        let unknown = request(Commitment::None, None).cost_statement();
        assert!(unknown.contains("does not know the price") && unknown.contains("--provisioned-unit-price"));
        assert_eq!("6months".parse::<Commitment>(), Ok(Commitment::SixMonths));
        assert!("weekly".parse::<Commitment>().is_err());
    }
}
