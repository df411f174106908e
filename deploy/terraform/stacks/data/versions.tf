terraform {
  # Ephemeral resources and write-only arguments (1.11): no generated secret in any state.
  required_version = ">= 1.11"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0"
    }
    # The ephemeral random_password (3.7.0).
    random = {
      source  = "hashicorp/random"
      version = ">= 3.7"
    }
  }

  # terraform init -backend-config=../../envs/<env>/backend-data.hcl
  backend "s3" {}
}

provider "aws" {
  region = var.region
}
