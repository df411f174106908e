terraform {
  # Ephemeral resources and write-only arguments (1.11): no generated secret in any state.
  required_version = ">= 1.11"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0"
    }
  }

  # One state per stack: a CDN change never shows up in the plan of the database.
  # terraform init -backend-config=../../envs/<env>/backend-cdn.hcl
  backend "s3" {}
}

provider "aws" {
  region = var.region
}

# CloudFront's certificate and WAF live in us-east-1 whatever the region of the store.
provider "aws" {
  alias  = "us_east_1"
  region = "us-east-1"
}
