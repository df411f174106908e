terraform {
  required_version = ">= 1.5.7"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0"
    }
    tls = {
      source  = "hashicorp/tls"
      version = ">= 4.0"
    }
  }

  # terraform init -backend-config=../../envs/<env>/backend-compute.hcl
  backend "s3" {}
}

provider "aws" {
  region = var.region
}
